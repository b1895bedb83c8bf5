"""Runs a command and writes one line of figures to OUT; every benchmark uses it.

  /usr/bin/python3 benches/measure.py OUT [--watch PID] COMMAND [ARGS...]

The line is "wall cpu peak_rss_kib rchar read_bytes peak_anon_kib peak_file_kib own_cpu":

- wall: seconds from fork to exit.
- cpu, peak_rss_kib, peak_anon_kib, peak_file_kib: of the command, or with
  `--watch PID` of that running process while the command runs (a seeder serving
  the command, say). CPU is user + system seconds, threads included (the command's
  from wait4's rusage; a watched process's from /proc/PID/stat). Peak RSS is the
  kernel's high-water mark (VmHWM; a watched process's is reset first through
  clear_refs); rusage's max RSS would count this python, which the child was
  before exec. The two parts of RSS, anonymous memory and file pages (the binary,
  libraries, and mmap'd data such as libtorrent's torrent files), are peaks
  sampled from /proc/PID/status every 20 ms.
- rchar, read_bytes: what the command read (read(2), pread(2); and of that, what
  came from the disk itself). A reaped child's I/O counts are added to its
  parent's, so they are this process's /proc/self/io after the wait minus before,
  minus the bytes this process read itself (the sampler's reads, counted exactly).
- own_cpu: the command's own CPU, also with --watch.

The command's exit status is passed on.
"""
import os
import sys
import threading
import time

PARTS = (b"VmHWM:", b"RssAnon:", b"RssFile:")


def io_counts():
    with open("/proc/self/io", "rb", buffering=0) as f:
        text = f.read()
    fields = dict(line.split(b": ") for line in text.splitlines())
    return int(fields[b"rchar"]), int(fields[b"read_bytes"]), len(text)


def stat_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main():
    args = sys.argv[1:]
    out, args = args[0], args[1:]
    watched = None
    if args[:1] == ["--watch"]:
        watched, args = int(args[1]), args[2:]
    cmd = args
    own_reads = [0]  # bytes this process read while the child ran
    peak = dict.fromkeys(PARTS, 0)
    if watched:
        with open(f"/proc/{watched}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        watched_before = stat_cpu(watched)
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
    target = watched or pid

    def sample():
        try:
            fd = os.open(f"/proc/{target}/status", os.O_RDONLY)
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
                    for part in PARTS:
                        if line.startswith(part):
                            peak[part] = max(peak[part], int(line.split()[1]))
                time.sleep(0.02)
        finally:
            os.close(fd)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    own_cpu = usage.ru_utime + usage.ru_stime
    if watched:
        cpu = stat_cpu(watched) - watched_before
        with open(f"/proc/{watched}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    peak[b"VmHWM:"] = int(line.split()[1])
    else:
        sampler.join(1.0)  # the status file reads empty once the child is reaped
        cpu = own_cpu
    after_rchar, after_disk, _ = io_counts()
    rchar = after_rchar - before_rchar - own_reads[0]
    disk = after_disk - before_disk
    hwm, anon, file_pages = (peak[part] for part in PARTS)
    with open(out, "w") as f:
        f.write(f"{wall:.3f} {cpu:.3f} {hwm} {rchar} {disk} {anon} {file_pages} {own_cpu:.3f}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
