"""The compile pipeline a build host runs: fetch, validate, build, push and verify."""
