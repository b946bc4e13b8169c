"""Summarize a py-spy raw profile: busy samples (not waiting on sockets, locks or polls) by our function."""

import sys
from collections import Counter

IDLE = (
    "_epoll.poll",
    "Condition.wait",
    "Connection._recv",
    "select",
    "socket.accept",
    "_wait_for_tstate_lock",
    "Event.wait",
    "sleep",
    "Queue.get",
    "poll (",
    "wait (selectors",
    "_recv (",
    "recv_into",
    "PGconn",
    "wait_c",
    "Selector",
)
own = Counter()
incl = Counter()
busy = total = 0
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n)
    total += n
    frames = stack.split(";")
    if any(i in frames[-1] for i in IDLE):
        continue
    busy += n
    own[frames[-1]] += n
    for f in set(frames):
        if "/webapp/" in f or "workers/" in f or "(webapp" in f:
            incl[f] += n
print(f"samples {total}, busy {busy}")
for f, n in own.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 15):
    print(f"{n / busy * 100:5.1f}% own  {f[:140]}")
for f, n in incl.most_common(int(sys.argv[3]) if len(sys.argv) > 3 else 25):
    print(f"{n / busy * 100:5.1f}% incl {f[:140]}")
