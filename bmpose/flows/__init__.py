"""The library's entry points: one frozen request per user task (build, detector, deploy) and the function that
carries it out. bmpose.cli only parses argv into these requests and prints; no CLI module runs another."""
