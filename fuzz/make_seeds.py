#!/usr/bin/env python3
"""Regenerates the seed corpora under fuzz/corpus/ (run from the repo root).

    python3 fuzz/make_seeds.py [path/to/service-names-port-numbers.csv]

iana_csv: real rows, byte for byte, from IANA's CSV (default: the snapshot
committed in data/iana/), a few files of at most about 40 rows in all.
netlink_reply: NETLINK_SOCK_DIAG replies encoded the way the kernel sends
them (native byte order, as src/sockets/netlink.rs reads them).
port_list and web_config: hand-written flag values and YAML files.
"""

import csv
import io
import ipaddress
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as out:
        out.write(data)


# --- iana_csv -------------------------------------------------------------

def raw_records(path):
    """Yields (fields, raw text) per record, keeping IANA's exact bytes."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = f.read().split("\n")
    reader = csv.reader(io.StringIO("\n".join(lines)))
    start = 0
    for fields in reader:
        end = reader.line_num
        yield fields, "\n".join(lines[start:end]) + "\n"
        start = end


def iana_seeds(path):
    records = list(raw_records(path))
    header = records[0][1]
    rows = records[1:]

    def pick(*wanted):
        """Rows whose (port, transport) or (service, port) is wanted, in file order."""
        out = []
        for fields, text in rows:
            for want in wanted:
                if (fields[1], fields[2]) == want or (fields[0], fields[1]) == want:
                    out.append(text)
                    break
        return out

    seeds = {
        # Port 0 and 1023 reserved, a plain assignment on all four transports,
        # an unassigned range with an empty transport (272-279), a port row
        # with no row at all for one transport (1008), an experiment port.
        "well-known.csv": pick(
            ("0", "tcp"), ("0", "udp"), ("discard", "9"), ("270", "tcp"),
            ("272-279", ""), ("1008", "udp"), ("exp1", "1021"),
            ("1023", "tcp"), ("1023", "udp"),
        ),
        # Quoted fields with embedded newlines, commas and doubled quotes.
        "multiline.csv": pick(("whoispp", "63"), ("whois++", "63"), ("http", "80")),
        # Registered-range rows: ranges, reserved udp-only ports,
        # "Unauthorized Use Reported", and service names without a port.
        "registered.csv": pick(
            ("7775", "udp"), ("10082-10099", ""), ("27010", "udp"),
            ("27011-27015", ""), ("27018-27344", ""), ("argus", ""), ("arp", ""),
        ),
    }
    total = 0
    for name, picked in seeds.items():
        assert picked, name
        total += len(picked)
        write("iana_csv", name, header + "".join(picked))
    assert total <= 40, total


# --- netlink_reply --------------------------------------------------------

AF_INET, AF_INET6 = 2, 10
NLMSG_ERROR, NLMSG_DONE, SOCK_DIAG_BY_FAMILY = 2, 3, 20
NLM_F_MULTI = 0x2
TCP_LISTEN, TCP_CLOSE = 10, 7


def nlmsg(kind, payload, seq=1, flags=NLM_F_MULTI, pid=4242):
    """nlmsghdr + payload, padded to four bytes (NLMSG_ALIGN)."""
    header = struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, pid)
    message = header + payload
    return message + b"\0" * (-len(message) % 4)


def rtattr(kind, value):
    attr = struct.pack("=HH", 4 + len(value), kind) + value
    return attr + b"\0" * (-len(attr) % 4)


def diag_msg(address, port, state, uid, inode, attrs=b""):
    """struct inet_diag_msg: 72 bytes, then optional attributes."""
    ip = ipaddress.ip_address(address)
    family = AF_INET if ip.version == 4 else AF_INET6
    src = ip.packed.ljust(16, b"\0")
    payload = struct.pack("=BBBB", family, state, 0, 0)
    payload += struct.pack(">HH", port, 0)          # idiag_sport, idiag_dport
    payload += src + b"\0" * 16                     # idiag_src, idiag_dst
    payload += struct.pack("=I", 0)                 # idiag_if
    payload += struct.pack("=II", inode & 0xFFFF, 0x8000)  # idiag_cookie
    payload += struct.pack("=IIIII", 0, 0, 0, uid, inode)  # expires rqueue wqueue uid inode
    assert len(payload) == 72
    return nlmsg(SOCK_DIAG_BY_FAMILY, payload + attrs)


DONE = nlmsg(NLMSG_DONE, struct.pack("=i", 0))


def netlink_seeds():
    shutdown = rtattr(8, b"\0")  # INET_DIAG_SHUTDOWN, as the kernel appends it
    write("netlink_reply", "tcp4-listen-276.bin",
          diag_msg("0.0.0.0", 276, TCP_LISTEN, 0, 31337) + DONE)
    write("netlink_reply", "tcp6-two-listeners.bin",
          diag_msg("::", 276, TCP_LISTEN, 1000, 40001, shutdown)
          + diag_msg("::1", 631, TCP_LISTEN, 0, 40002, shutdown) + DONE)
    # A full datagram of a longer dump: no NLMSG_DONE yet.
    write("netlink_reply", "udp4-more.bin",
          diag_msg("127.0.0.53", 53, TCP_CLOSE, 101, 5001)
          + diag_msg("192.0.2.7", 277, TCP_CLOSE, 65534, 5002))
    # The kernel refusing the request: NLMSG_ERROR with -EPERM and the request.
    request = struct.pack("=IHHII", 72, SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + b"\0" * 56
    write("netlink_reply", "error-eperm.bin",
          nlmsg(NLMSG_ERROR, struct.pack("=i", -1) + request[:16], flags=0))
    # An acknowledgement (error code 0), then a socket and the end of the dump.
    write("netlink_reply", "ack-then-done.bin",
          nlmsg(NLMSG_ERROR, struct.pack("=i", 0) + request[:16], flags=0)
          + diag_msg("2001:db8::276", 276, TCP_CLOSE, 0, 777) + DONE)
    # Regression, found by this target: an error code of i32::MIN made the
    # errno negation overflow (a panic with overflow checks on).
    write("netlink_reply", "regression-error-i32-min.bin",
          nlmsg(NLMSG_ERROR, struct.pack("=i", -2**31), seq=0, flags=0, pid=0))


# --- port_list ------------------------------------------------------------

PORT_LISTS = {
    "single": "276",
    "range-udp": "8000-8100/udp",
    "allow-process": "276/tcp:sshd",
    "backwards": "5-3",
    "out-of-range": "70000",
    "list": "276,8000-8100,53/udp",
    "everything-tcp": "0-65535/tcp",
    "spaces-upper": " 272 - 279 /TCP",
    "allow-range-process": "272-279/udp:my daemon",
    "empty-process": "276:",
}


def port_list_seeds():
    for name, text in PORT_LISTS.items():
        write("port_list", name, text)


# --- web_config -----------------------------------------------------------

WEB_CONFIGS = {
    "tls-basic-auth.yml": """\
# The exporter-toolkit web configuration file (--web.config.file).
tls_server_config:
  cert_file: /etc/unassigned_port_exporter/tls.crt
  key_file: /etc/unassigned_port_exporter/tls.key
  min_version: TLS12
basic_auth_users:
  prometheus: $2b$10$nN1MON4nLtRT7s3PJZP/j.D7pdgm9aXpdMDL7EJ0Aw4G45xajymXC
""",
    "mutual-tls.yml": """\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  min_version: TLS13
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [X25519, CurveP256]
  prefer_server_cipher_suites: true
""",
    "headers.yml": """\
http_server_config:
  http2: false
  headers:
    Content-Security-Policy: "default-src 'self'"
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000; includeSubDomains
basic_auth_users:
  alice: "$2b$12$4Am0TQr5ei.hnzfTgmpXN.hRbbx8gsJ9ASrwtk4iqECyDmRcI.n6W"
  bob: '$2a$04$RL6B5h4JReHaO4SzPU6a8.noj0uLi2airj8tE4YGCYZpt0FsRRm7C'
""",
    "inline-pem.yml": """\
tls_server_config:
  cert: |
    -----BEGIN CERTIFICATE-----
    MIIBdzCCAR2gAwIBAgIUBDJRnZ9fEVv0nXHnFl8cPU4AcCAwCgYIKoZIzj0EAwIw
    -----END CERTIFICATE-----
  key: |
    -----BEGIN PRIVATE KEY-----
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg
    -----END PRIVATE KEY-----
""",
    # Refused: client_allowed_sans is not supported, TLS 1.1 is too old.
    "refused.yml": """\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_allowed_sans: [prometheus.example.org]
  min_version: TLS11
""",
    "empty.yml": "",
    "unknown-key.yml": "tls_server_config:\n  cert_fille: x.crt\nbasic_auth_users: {}\n",
}


def web_config_seeds():
    for name, text in WEB_CONFIGS.items():
        write("web_config", name, text)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "data", "iana", "service-names-port-numbers.csv")
    iana_seeds(sys.argv[1] if len(sys.argv) > 1 else default)
    netlink_seeds()
    port_list_seeds()
    web_config_seeds()
