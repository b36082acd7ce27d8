"""A real SMTP server for pwreset-notify's tests: aiosmtpd on loopback. Each message
it accepts is parsed with Python's email package and written to OUT_DIR as
<n>.json (recipients, decoded headers, the text and HTML parts) beside the raw
<n>.eml. RCPT TO an address starting with "reject" is refused with 550 (a permanent
failure for one recipient); with SINK_TEMPFAIL_DOMAIN=example.net, RCPT TO any address
at that domain is refused with 450 (Postfix's answer for an unknown recipient domain:
a transient failure, forever); with SINK_GREYLIST_DOMAIN=d and SINK_GREYLIST_SECONDS=n,
RCPT TO an address at d is refused with 450 until n seconds after that address was
first seen (greylisting). Every RCPT TO is appended to OUT_DIR/rcpt.log.

    python3 smtp_sink.py PORT OUT_DIR [starttls|tls CERT_PEM KEY_PEM]

With starttls the server offers STARTTLS and refuses mail until it is used; with tls
it speaks TLS from the first byte (smtps). Each record says whether its session was
encrypted ("tls").
"""
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0
        self.first_seen = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(os.path.join(self.out_dir, "rcpt.log"), "a") as f:
            f.write(address + "\n")
        tempfail = os.environ.get("SINK_TEMPFAIL_DOMAIN")
        if tempfail and address.endswith("@" + tempfail):
            return "450 4.1.2 <%s>: Recipient address rejected: Domain not found" % address
        greylist = os.environ.get("SINK_GREYLIST_DOMAIN")
        if greylist and address.endswith("@" + greylist):
            now = asyncio.get_running_loop().time()
            first = self.first_seen.setdefault(address, now)
            if now - first < float(os.environ.get("SINK_GREYLIST_SECONDS", "0")):
                return "450 4.2.0 <%s>: Recipient address rejected: Greylisted" % address
        if address.startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = {}
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_type()] = part.get_content()
        record = {
            "rcpt": envelope.rcpt_tos,
            "to": str(msg["To"]),
            "from": str(msg["From"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "content_type": msg.get_content_type(),
            "text": parts.get("text/plain", ""),
            "html": parts.get("text/html", ""),
            # STARTTLS sets session.ssl; an implicit-TLS connection is TLS throughout.
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
        }
        base = os.path.join(self.out_dir, f"{self.count:06d}")
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        with open(base + ".json.tmp", "w") as f:
            json.dump(record, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 Message accepted"


async def main():
    port, out_dir = int(sys.argv[1]), sys.argv[2]
    options = {}
    if len(sys.argv) > 3:
        mode, cert, key = sys.argv[3:6]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if mode == "starttls":
            options = {"tls_context": context, "require_starttls": True}
        else:
            options = {"ssl_context": context}
    controller = Controller(Sink(out_dir), hostname="127.0.0.1", port=port, **options)
    controller.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
