// The build log viewer: live text from the log stream, ANSI colours, line links.
//
// The stream (GET /api/v1/builds/{id}/log/stream) sends `log` events with the text between two
// character offsets, its id being `attempt:next_offset`; the browser reconnects by itself with
// Last-Event-ID and the stream resumes there. The viewer also keeps the offset it expects next
// and drops any text it already has, so a reconnect never shows a line twice nor skips one.
import { AnsiUp } from "./vendor/ansi_up-6.0.6.js";

const LINK = /^#L(\d+)(?:-L(\d+))?$/;

class LogViewer {
  constructor(element) {
    this.element = element;
    this.state = document.getElementById("log-state");
    this.buildId = element.dataset.buildId;
    this.attempt = Number(element.dataset.attempt);
    this.followRetries = element.dataset.followRetries === "yes";
    this.follow = !LINK.test(location.hash);
    this.anchor = null;
    this.pendingLink = LINK.test(location.hash);
    element.addEventListener("scroll", () => {
      const bottom = element.scrollHeight - element.clientHeight - element.scrollTop;
      this.follow = bottom < 8;
    });
    element.addEventListener("click", (event) => this.onLineClick(event));
    window.addEventListener("hashchange", () => this.highlight(true));
    const earlier = document.getElementById("log-earlier");
    if (earlier) {
      earlier.addEventListener("click", () => {
        earlier.closest(".earlier").remove();
        this.start(0, 0);
      });
    }
    this.start(Number(element.dataset.offset), Number(element.dataset.linesBefore));
  }

  start(offset, linesBefore) {
    if (this.source) this.source.close();
    this.reset(offset, linesBefore);
    this.open(offset);
  }

  reset(offset, linesBefore) {
    this.element.replaceChildren();
    this.ansi = new AnsiUp();
    this.ansi.use_classes = true;
    this.expected = offset;
    this.lines = linesBefore;
    this.partial = "";
  }

  open(offset) {
    const query = new URLSearchParams({ offset: String(offset) });
    if (!this.followRetries) query.set("attempt", String(this.attempt));
    const source = new EventSource(`/api/v1/builds/${this.buildId}/log/stream?${query}`);
    this.source = source;
    source.addEventListener("open", () => this.say("live"));
    source.addEventListener("log", (message) => this.onText(JSON.parse(message.data)));
    source.addEventListener("attempt", (message) => {
      // The same stream goes on with the new attempt's log, from its start.
      const { attempt } = JSON.parse(message.data);
      this.attempt = attempt;
      this.reset(0, 0);
      this.notice(`Attempt ${attempt} started.`);
    });
    source.addEventListener("end", (message) => {
      const data = JSON.parse(message.data);
      source.close();
      this.flushPartial();
      this.say(`finished: ${data.status}`);
      this.element.dataset.complete = "yes";
      // The attempt is over: the summary shows the final status even if its event was missed.
      document.body.dispatchEvent(new CustomEvent("cartridge:build-changed"));
    });
    source.addEventListener("gone", () => { source.close(); this.say("the build is gone"); });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED && this.source === source) {
        // Refused outright (not a dropped connection): try again from where the text ends.
        this.say("reconnecting…");
        setTimeout(() => { if (this.source === source) this.open(this.expected); }, 2000);
      } else if (this.element.dataset.complete !== "yes") {
        this.say("reconnecting…");
      }
    });
  }

  onText(page) {
    if (page.attempt !== this.attempt) return;
    let text = page.content;
    if (page.offset > this.expected) {
      // Text is missing before this piece: read again from what the viewer has.
      this.source.close();
      this.open(this.expected);
      return;
    }
    if (page.offset < this.expected) text = text.slice(this.expected - page.offset);
    this.expected = Math.max(this.expected, page.next_offset);
    if (text) this.append(text);
  }

  append(text) {
    const pieces = (this.partial + text).split("\n");
    this.partial = pieces.pop();
    const fragment = document.createDocumentFragment();
    for (const piece of pieces) fragment.append(this.line(piece));
    this.element.append(fragment);
    this.afterAppend();
  }

  flushPartial() {
    if (this.partial) {
      this.element.append(this.line(this.partial));
      this.partial = "";
      this.afterAppend();
    }
  }

  line(text) {
    this.lines += 1;
    const number = this.lines;
    const row = document.createElement("div");
    row.className = "line";
    row.id = `L${number}`;
    const link = document.createElement("a");
    link.className = "ln";
    link.href = `#L${number}`;
    link.textContent = String(number);
    const body = document.createElement("span");
    body.className = "text";
    // ansi_up escapes the text (escape_html is on) and adds only its own spans.
    body.innerHTML = this.ansi.ansi_to_html(text.replace(/\r$/, ""));
    row.append(link, body);
    return row;
  }

  notice(text) {
    const row = document.createElement("div");
    row.className = "notice";
    row.textContent = text;
    this.element.append(row);
  }

  afterAppend() {
    if (this.pendingLink) this.highlight(true);
    if (this.follow) this.element.scrollTop = this.element.scrollHeight;
  }

  onLineClick(event) {
    const link = event.target.closest("a.ln");
    if (!link) return;
    const number = Number(link.textContent);
    if (event.shiftKey && this.anchor !== null) {
      event.preventDefault();
      const [from, to] = [Math.min(this.anchor, number), Math.max(this.anchor, number)];
      history.replaceState(null, "", `#L${from}-L${to}`);
      this.highlight(false);
      return;
    }
    this.anchor = number;
  }

  highlight(scroll) {
    const match = LINK.exec(location.hash);
    this.element.querySelectorAll(".line.hl").forEach((row) => row.classList.remove("hl"));
    if (!match) { this.pendingLink = false; return; }
    const from = Number(match[1]);
    const to = Math.max(from, Number(match[2] || match[1]));
    const first = document.getElementById(`L${from}`);
    if (!first) {
      const shownFrom = Number(this.element.dataset.linesBefore) + 1;
      if (from < shownFrom && this.lines >= shownFrom - 1 && document.getElementById("log-earlier")) {
        document.getElementById("log-earlier").click();
      }
      this.pendingLink = true;
      return;
    }
    this.pendingLink = !document.getElementById(`L${to}`);
    this.anchor = from;
    for (let number = from; number <= to; number += 1) {
      const row = document.getElementById(`L${number}`);
      if (row) row.classList.add("hl");
    }
    if (scroll) {
      this.follow = false;
      first.scrollIntoView({ block: "center" });
    }
  }

  say(text) {
    if (this.state) this.state.textContent = text;
  }
}

const element = document.getElementById("log");
if (element) window.cartridgeLog = new LogViewer(element);
