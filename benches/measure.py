"""Runs a command and writes "wall cpu peak_rss_kib rchar read_bytes" to OUT.

  /usr/bin/python3 benches/measure.py OUT COMMAND [ARGS...]

- wall: seconds from fork to exit; cpu: user + system seconds from wait4's rusage
  (threads included).
- peak_rss_kib: the program's own high-water mark (VmHWM), sampled from
  /proc/PID/status every 20 ms while it runs (rusage's max RSS would count this
  python, which the child was before exec).
- rchar, read_bytes: what the program read (read(2), pread(2); and of that, what
  came from the disk itself). A reaped child's I/O counts are added to its
  parent's, so they are this process's /proc/self/io after the wait minus before,
  minus the bytes this process read itself (the sampler's reads, counted exactly).

The command's exit status is passed on.
"""
import os
import sys
import threading
import time


def io_counts():
    with open("/proc/self/io", "rb", buffering=0) as f:
        text = f.read()
    fields = dict(line.split(b": ") for line in text.splitlines())
    return int(fields[b"rchar"]), int(fields[b"read_bytes"]), len(text)


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    own_reads = [0]  # bytes this process read while the child ran
    before_rchar, before_disk, first_len = io_counts()
    own_reads[0] += first_len  # the first snapshot's own read shows in the second
    started = time.monotonic()
    # The pipe's write end closes on exec (python's fds are close-on-exec), so
    # sampling starts on the program, never on the python it was forked from.
    execed, child_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(execed)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)  # exec failed
    os.close(child_end)
    own_reads[0] += len(os.read(execed, 1))
    peak = [0]

    def sample():
        try:
            fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
        except OSError:
            return
        try:
            while True:
                try:
                    text = os.pread(fd, 8192, 0)
                except OSError:
                    return
                own_reads[0] += len(text)
                if not text:
                    return
                for line in text.splitlines():
                    if line.startswith(b"VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
                time.sleep(0.02)
        finally:
            os.close(fd)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    sampler.join(1.0)  # the status file reads empty once the child is reaped
    after_rchar, after_disk, _ = io_counts()
    rchar = after_rchar - before_rchar - own_reads[0]
    disk = after_disk - before_disk
    with open(out, "w") as f:
        cpu = usage.ru_utime + usage.ru_stime
        f.write(f"{wall:.3f} {cpu:.3f} {peak[0]} {rchar} {disk}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
