"""The reconciler: recovers pushes whose webhook never arrived by comparing each repository's
branch heads with GitHub's, and asks GitHub to redeliver the App's failed hook deliveries."""
