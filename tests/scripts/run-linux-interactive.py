#!/usr/bin/env python3
"""scripts/run-linux --interactive in a terminal (a pseudo-terminal here):
before QEMU starts it says what the console is and how to leave QEMU
(Ctrl-A X); a line typed while it runs and never read by the guest does not
reach the shell after it, and the terminal's settings are as they were.
QEMU runs the image without EL2 (virtualization=off), so it ends at once
after the hyp's one line; this needs target/image/hyp.img and the kernel of
scripts/fetch-linux, which scripts/run-linux builds and fetches if missing.

    tests/scripts/run-linux-interactive.py    (scripts/test runs it)
"""
import os
import pty
import select
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# Longer than any UART's receive FIFO, so that QEMU cannot take all of it.
TYPED = "echo this line was typed at the guest console and must not reach the shell"
SHELL = f"""
before=$(stty -g)
scripts/run-linux --interactive -M virt,virtualization=off
echo "run-linux exited with status $?"
if [ "$(stty -g)" = "$before" ]; then echo "terminal: as before"; else echo "terminal: changed"; fi
if read -r -t 2 line; then echo "leaked into the shell: $line"; else echo "nothing leaked"; fi
"""


def main():
    pid, terminal = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execvp("bash", ["bash", "-c", SHELL])
    # Typed at once: it waits in the terminal while the script builds, then QEMU runs.
    os.write(terminal, (TYPED + "\n").encode())
    output = b""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([terminal], [], [], 1)
        if ready:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the child is gone
                break
            if not chunk:
                break
            output += chunk
    else:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    text = output.decode(errors="replace").replace("\r", "")
    expected = [
        "this terminal is the guest's console (ttyAMA0, a PL011 the host shim serves)",
        "to leave QEMU at any time: Ctrl-A, then X.",
        "entered at EL1",
        "run-linux exited with status 1",
        "terminal: as before",
        "nothing leaked",
    ]
    missing = [line for line in expected if line not in text]
    if missing:
        print(f"FAILED: scripts/run-linux --interactive: missing {missing}; its terminal showed:\n{text}", file=sys.stderr)
        sys.exit(1)
    print("scripts/run-linux --interactive: says how to leave, terminal restored, typed input discarded", file=sys.stderr)


main()
