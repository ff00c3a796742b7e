#!/usr/bin/env python3
"""Socket work for scripts/lab.sh: QMP and the guest command channel, always with a
deadline, so that a QEMU that does not answer is an error and never a hang.

    labctl.py qmp SOCK COMMAND [JSON-ARGS]     print the command's return value (JSON)
    labctl.py vcpus SOCK                       "<cpu-index> <thread-id>" per vCPU
    labctl.py send CMD-SOCK LOG VERB [ARGS...] send a command, print the guest's ack
    labctl.py exec CMD-SOCK LOG SHELL-COMMAND  run it in the guest, print its output,
                                               exit with its status
    labctl.py wait-ready LOG PID               wait for the first progress line
    labctl.py last-progress LOG                "<rate> <workload> <phase> <age-s>"
    labctl.py migrate SRC-QMP DST-QMP PORT     migrate over tcp:127.0.0.1:PORT and wait
    labctl.py free-port                        a free TCP port on 127.0.0.1

Every command takes --timeout SECONDS. Exit status: 0 ok, 1 failed (the guest or QEMU
said no), 2 usage or cannot connect, 3 timed out.
"""

import argparse
import base64
import json
import os
import re
import socket
import sys
import time

PROGRESS = re.compile(r"progress t=(\S+) workload=(\S+) phase=(\S+) rate=(\S+)")


class Timeout(Exception):
    pass


class Failed(Exception):
    pass


class Unreachable(Exception):
    pass


def remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout()
    return left


class Qmp:
    """A QMP client whose every read and write is bounded by one deadline."""

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = b""
        try:
            self.sock.settimeout(remaining(self.deadline))
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise Unreachable(f"cannot connect to QMP socket {path}: {e.strerror}") from e
        except (socket.timeout, Timeout) as e:
            raise self.timed_out("connecting") from e
        greeting = self.read_message("waiting for the greeting")
        if "QMP" not in greeting:
            raise Failed(f"{path} is not a QMP socket (greeting: {greeting})")
        self.execute("qmp_capabilities")

    def timed_out(self, what):
        return Timeout(
            f"QMP socket {self.path} did not answer within {self.timeout:g} s ({what}); "
            "is QEMU stopped or hung?"
        )

    def read_message(self, what):
        while b"\n" not in self.buf:
            try:
                self.sock.settimeout(remaining(self.deadline))
                chunk = self.sock.recv(65536)
            except (socket.timeout, Timeout) as e:
                raise self.timed_out(what) from e
            if not chunk:
                raise Failed(f"QMP socket {self.path} closed the connection ({what})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command, arguments=None):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.sock.settimeout(remaining(self.deadline))
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except (socket.timeout, Timeout) as e:
            raise self.timed_out(f"sending {command}") from e
        while True:
            reply = self.read_message(f"waiting for the reply to {command}")
            if "event" in reply:
                continue
            if "error" in reply:
                err = reply["error"]
                raise Failed(f"QMP {command} failed: {err.get('class')}: {err.get('desc')}")
            return reply.get("return")

    def extend(self, seconds):
        self.deadline = max(self.deadline, time.monotonic() + seconds)

    def close(self):
        self.sock.close()


def log_size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


class LogTail:
    """Complete lines appended to a log since the tail was made (or since `offset`)."""

    def __init__(self, path, offset=None):
        self.path = path
        self.offset = log_size(path) if offset is None else offset

    def new_lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return data[:end].decode("utf-8", "replace").split("\n")


def send_command(sock_path, log, line, want, timeout):
    """Writes `line` to the guest's command port and keeps the connection open until a
    log line after the current end satisfies `want` (the guest's reader is a slow
    UART: closing early would drop what QEMU has not yet taken)."""
    deadline = time.monotonic() + timeout
    tail = LogTail(log)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(remaining(deadline))
        s.connect(sock_path)
        # The leading newline ends any partial line an earlier, interrupted sender left.
        s.sendall(b"\n" + line.encode() + b"\n")
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise Unreachable(f"cannot connect to the command port {sock_path}: {e.strerror}") from e
    except (socket.timeout, Timeout) as e:
        raise Timeout(f"command port {sock_path} did not take the command in {timeout:g} s") from e
    try:
        while True:
            for text in tail.new_lines():
                result = want(text)
                if result is not None:
                    return result
            try:
                remaining(deadline)
            except Timeout as e:
                raise Timeout(
                    f"the guest did not answer '{line}' within {timeout:g} s (serial log: {log})"
                ) from e
            time.sleep(0.1)
    finally:
        s.close()


def command_id():
    return f"h{os.getpid()}x{time.monotonic_ns() % 10**9}"


def cmd_send(args):
    cid = command_id()
    line = " ".join([cid, args.verb] + args.args)

    def acked(text):
        if text.startswith(f"ack {cid} "):
            return text
        return None

    ack = send_command(args.sock, args.log, line, acked, args.timeout)
    print(ack[len(f"ack {cid} "):])
    if not ack.startswith(f"ack {cid} ok"):
        raise Failed(ack)


def cmd_exec(args):
    cid = command_id()
    out = []

    def done(text):
        if text.startswith(f"ack {cid} err"):
            raise Failed(text)
        if text.startswith(f"out {cid} "):
            out.append(text[len(f"out {cid} "):])
        m = re.match(rf"done {cid} rc=(\d+)", text)
        return int(m.group(1)) if m else None

    encoded = base64.b64encode(args.command.encode()).decode()
    rc = send_command(args.sock, args.log, f"{cid} exec64 {encoded}", done, args.timeout)
    # Output lines come before "done"; the scan above saw all of them.
    for text in out:
        print(text)
    return rc


def cmd_qmp(args):
    q = Qmp(args.sock, args.timeout)
    arguments = json.loads(args.arguments) if args.arguments else None
    print(json.dumps(q.execute(args.command, arguments)))
    q.close()


def cmd_vcpus(args):
    q = Qmp(args.sock, args.timeout)
    for cpu in q.execute("query-cpus-fast"):
        print(cpu["cpu-index"], cpu["thread-id"])
    q.close()


def process_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def cmd_wait_ready(args):
    deadline = time.monotonic() + args.timeout
    tail = LogTail(args.log, 0)
    while True:
        for text in tail.new_lines():
            if PROGRESS.search(text):
                print(text)
                return
        if not process_alive(args.pid):
            raise Failed(f"QEMU (pid {args.pid}) exited before the guest reported progress")
        try:
            remaining(deadline)
        except Timeout as e:
            raise Timeout(f"no progress line within {args.timeout:g} s") from e
        time.sleep(0.2)


def last_progress(log):
    try:
        with open(log, "rb") as f:
            f.seek(max(0, log_size(log) - 16384))
            lines = f.read().decode("utf-8", "replace").split("\n")
        mtime = os.path.getmtime(log)
    except FileNotFoundError:
        return None
    for text in reversed(lines):
        m = PROGRESS.search(text)
        if m:
            return m, time.time() - mtime
    return None


def cmd_last_progress(args):
    found = last_progress(args.log)
    if found is None:
        print("- - - -")
        return
    m, age = found
    print(f"{float(m.group(4)):.1f} {m.group(2)} {m.group(3)} {age:.0f}")


def cmd_migrate(args):
    deadline = time.monotonic() + args.timeout
    src = Qmp(args.src, min(args.timeout, 10))
    dst = Qmp(args.dst, min(args.timeout, 10))
    status = dst.execute("query-status")["status"]
    if status != "inmigrate":
        raise Failed(f"destination {args.dst} is '{status}', not waiting for an incoming migration")
    # Loopback is fast: lift the 128 MiB/s default, allow a TCG-sized downtime, and let
    # QEMU throttle a guest that dirties memory faster than it can be sent.
    src.execute("migrate-set-capabilities",
                {"capabilities": [{"capability": "auto-converge", "state": True}]})
    src.execute("migrate-set-parameters",
                {"max-bandwidth": 4 << 30, "downtime-limit": 1000})
    src.execute("migrate", {"uri": f"tcp:127.0.0.1:{args.port}"})
    while True:
        src.extend(5)
        info = src.execute("query-migrate")
        state = info.get("status")
        if state == "completed":
            break
        if state in ("failed", "cancelled"):
            raise Failed(f"migration {state}: {info.get('error-desc', 'no reason given')}")
        if time.monotonic() > deadline:
            src.execute("migrate_cancel")
            raise Timeout(f"migration not completed within {args.timeout:g} s (status {state})")
        time.sleep(0.2)
    ram = info.get("ram", {})
    while True:
        dst.extend(5)
        status = dst.execute("query-status")["status"]
        if status == "running":
            break
        if time.monotonic() > deadline:
            raise Timeout(f"destination is '{status}', not running, {args.timeout:g} s after the start")
        time.sleep(0.1)
    print(json.dumps({"total-time-ms": info.get("total-time"), "downtime-ms": info.get("downtime"),
                      "transferred": ram.get("transferred")}))


def cmd_free_port(_args):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout", type=float, default=10.0)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("qmp")
    s.add_argument("sock")
    s.add_argument("command")
    s.add_argument("arguments", nargs="?")
    s.set_defaults(run=cmd_qmp)
    s = sub.add_parser("vcpus")
    s.add_argument("sock")
    s.set_defaults(run=cmd_vcpus)
    s = sub.add_parser("send")
    s.add_argument("sock")
    s.add_argument("log")
    s.add_argument("verb")
    s.add_argument("args", nargs="*")
    s.set_defaults(run=cmd_send)
    s = sub.add_parser("exec")
    s.add_argument("sock")
    s.add_argument("log")
    s.add_argument("command")
    s.set_defaults(run=cmd_exec)
    s = sub.add_parser("wait-ready")
    s.add_argument("log")
    s.add_argument("pid", type=int)
    s.set_defaults(run=cmd_wait_ready)
    s = sub.add_parser("last-progress")
    s.add_argument("log")
    s.set_defaults(run=cmd_last_progress)
    s = sub.add_parser("migrate")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("port", type=int)
    s.set_defaults(run=cmd_migrate)
    s = sub.add_parser("free-port")
    s.set_defaults(run=cmd_free_port)
    args = p.parse_args()
    try:
        rc = args.run(args)
    except Timeout as e:
        print(f"lab: error: {e or 'timed out'}", file=sys.stderr)
        return 3
    except Unreachable as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 2
    except (Failed, OSError, ValueError) as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 1
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
