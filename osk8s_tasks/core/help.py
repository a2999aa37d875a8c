"""Help texts shared by every namespace's tasks (imported at `inv --list` time: keep it tiny)."""

COMMON_HELP = {
    "dry_run": "Run every check for real, change nothing, and print what would change.",
    "log_json": "Also write every log event as a JSON line to this file (mode 0600).",
}
