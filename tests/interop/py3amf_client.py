"""An AMF Socket client written with py3amf (an independent AMF implementation): sends requests,
messages, pings and a policy request to `amf-bench serve` on 127.0.0.1:PORT and checks the replies.
Exits non-zero with a message on the first mismatch."""

import datetime
import socket
import struct
import sys

import pyamf

PORT = int(sys.argv[1])
TIMEOUT = 10


class Point:
    """A typed object, registered under an ActionScript class alias."""

    def __init__(self, x=0, y=0):
        self.x = x
        self.y = y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


pyamf.register_class(Point, "com.example.Point")


class Client:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
        self.next_id = 0

    def send(self, envelope):
        payload = pyamf.encode(envelope, encoding=pyamf.AMF3).getvalue()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise AssertionError(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return data

    def recv(self):
        (length,) = struct.unpack(">I", self.read_exact(4))
        return next(pyamf.decode(self.read_exact(length), encoding=pyamf.AMF3))

    def call(self, command, params):
        self.next_id += 1
        message_id = f"py-{self.next_id}"
        self.send({"type": "rpcRequest",
                   "request": {"messageId": message_id, "command": command, "params": params}})
        messages = []
        while True:
            envelope = self.recv()
            if envelope["type"] == "rpcMessage":
                messages.append(envelope["message"])
                continue
            check(envelope["type"] == "rpcResponse", f"a reply, got {envelope}")
            check(envelope["response"]["messageId"] == message_id, f"id {message_id}: {envelope}")
            return envelope["response"]["result"], messages


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def main():
    client = Client()

    params = {
        "text": "héllo",
        "small": 7,
        "big": 2**40,
        "ratio": 0.25,
        "flags": [True, False, None],
        "point": Point(3, -4),
        "when": datetime.datetime(2026, 11, 21, 12, 30, 0),
        "nested": {"list": ["a", "a", "b"], "again": "héllo"},
    }
    result, _ = client.call("echo", params)
    check(result == params, f"echo returns the params unchanged: {result!r} != {params!r}")

    result, _ = client.call("amf_socket_ping", {"time": 1.7e9, "latency": 0.0})
    check(result is None, f"ping is answered with null, got {result!r}")

    client.send({"type": "rpcMessage",
                 "message": {"messageId": "py-m1", "command": "chat", "params": {"text": "hi"}}})

    result, messages = client.call("push", {"count": 3, "interval_ms": 1, "command": "tick"})
    check(result == {"pushed": 3}, f"push replies with the count: {result!r}")
    check([m["params"]["index"] for m in messages] == [0, 1, 2], f"pushed in order: {messages!r}")
    check(all(m["command"] == "tick" for m in messages), f"pushed command: {messages!r}")

    result, _ = client.call("no.such.command", {})
    check(result["error"]["code"] == "unknown_command", f"unknown command: {result!r}")

    result, _ = client.call("stats", {})
    check(result["messages"].get("chat") == 1, f"stats counts the message: {result!r}")
    check(result["requests"].get("echo") == 1, f"stats counts the echo: {result!r}")

    policy = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
    policy.sendall(b"<policy-file-request/>\0")
    answer = b""
    while True:
        chunk = policy.recv(4096)
        if not chunk:
            break
        answer += chunk
    check(answer.endswith(b"</cross-domain-policy>\n\0"), f"policy answer: {answer!r}")

    print("py3amf client: all checks passed")


if __name__ == "__main__":
    main()
