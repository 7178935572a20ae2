#!/usr/bin/env python3
"""Per-layer shares of a `perf record --call-graph dwarf` profile of the
transport bench (docs/PERFORMANCE.md section 9).

usage: profile_layers.py PERF_DATA BINARY
  e.g. RELAY_BENCH_ONLY=compare,relay RELAY_BENCH_FIGURES=bulk \
       perf record -e cpu-clock -F 2000 --call-graph dwarf,16384 -o bulk.data \
       target/release/deps/transport-<hash> --bench
       python3 tests/benches/transport/profile_layers.py bulk.data \
       target/release/deps/transport-<hash>

Each sample is charged to one layer, by the first frame from the leaf that
names a layer (see RULES); kernel samples by their kernel stack. Frames of
BINARY that perf leaves unresolved are resolved with `nm`. Prints the share
of all samples per layer, and the top leaves."""
import bisect, collections, re, subprocess, sys

data, bins = sys.argv[1], sys.argv[2:]
# perf prints file offsets for the binary's unresolved frames; symbols are
# at virtual addresses: add the executable segment's vaddr - offset.
DELTA = 0
for b in bins:
    for line in subprocess.run(["readelf", "-lW", b], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            DELTA = int(f[2], 16) - int(f[1], 16)
tables = {}
for b in bins:
    out = subprocess.run(["nm", "-n", "-C", "--defined-only", b], capture_output=True, text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16)); names.append(parts[2])
    tables[b.rsplit("/", 1)[-1]] = (addrs, names)

def resolve(dso, addr, sym):
    key = dso.rsplit("/", 1)[-1]
    if sym not in ("[unknown]", "") or key not in tables:
        return sym
    addrs, names = tables[key]
    i = bisect.bisect_right(addrs, addr + DELTA) - 1
    return names[i] if i >= 0 else sym

# (layer, regex on the frame's symbol); checked per frame, leaf first; the
# first frame matching any rule decides. Kernel frames are classified by
# the whole kernel part of the stack (see kernel_layer).
RULES = [
    ("header protection", r"HeaderProtectionKey|NoiseHeaderKey|HeaderKey>::(en|de)crypt|header_protection|aes_nohw_encrypt|aes_hw_encrypt\b|ChaCha20_ctr32.*hp"),
    ("packet crypto (AEAD)", r"chacha20_poly1305|ChaCha20_ctr32|poly1305|aes_gcm|aesni_gcm|gcm_(ghash|init|gmult)|aes_hw_ctr32|aes_gcm_enc|aes_gcm_dec|NoisePacketKey|PacketKey>::(en|de)crypt|ring::aead|ring_core.*(chacha|poly|aes|gcm)|LessSafeKey"),
    ("path socket + demux", r"relay_transport::socket|relay_transport::socket::"),
    ("quinn-udp (GSO/GRO)", r"quinn_udp::|noq_udp::"),
    ("quinn-proto (QUIC state machine)", r"quinn_proto::|noq_proto::"),
    ("quinn / noq (async endpoint + connection drivers)", r"^quinn::|^noq::|<quinn::|<noq::"),
    ("relay-node Transport (forwarders, peers)", r"relay_transport::"),
    ("iroh (socket, path selection)", r"^iroh|<iroh"),
    ("tokio runtime (tasks, wake-ups)", r"tokio::|parking_lot|std::thread::park|futex"),
    ("bench workload (streams, framing)", r"transport::workloads|transport::stacks|transport::compare|transport::coalesce"),
    ("allocator", r"^malloc$|^_int_malloc|^free$|^_int_free|^cfree|^realloc|^__libc_malloc|^__libc_free|malloc_consolidate|^calloc"),
]
RULES = [(n, re.compile(r)) for n, r in RULES]

def kernel_layer(kframes):
    s = " ".join(kframes)
    if re.search(r"futex|epoll|schedule|finish_task_switch|do_nanosleep|__x64_sys_sched_yield|pick_next|try_to_wake_up|ttwu", s):
        return "kernel: wake-ups (futex, epoll, scheduling)"
    if re.search(r"sendmsg|recvmsg|sendmmsg|recvmmsg|udp|ip_|__sys_send|__sys_recv|net_rx|__netif|skb", s):
        return "kernel: UDP syscalls (sendmsg/recvmsg, GSO/GRO)"
    return "kernel: other (page faults, mmap, irq)"

layers = collections.Counter(); leaves = collections.Counter(); total = 0
def flush(frames):
    global total
    if not frames:
        return
    total += 1
    syms = [resolve(d, a, s) for a, s, d in frames]
    kern = [s for (a, s, d), s in zip(frames, syms) if "kernel" in d]
    leaf = syms[0]
    leaves[leaf[:110]] += 1
    if kern and "kernel" in frames[0][2]:
        layers[kernel_layer(kern)] += 1
        return
    for s in syms:
        if "memmove" in s or "memcpy" in s or "memset" in s:
            continue
        for name, rx in RULES:
            if rx.search(s):
                layers[name] += 1
                return
    layers["other user space (memcpy callers, libc, unknown)"] += 1

proc = subprocess.Popen(["perf", "script", "-i", data, "-F", "ip,sym,dso", "--no-inline"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
frames = []
fr = re.compile(r"^\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)$")
for line in proc.stdout:
    if not line.strip():
        flush(frames); frames = []; continue
    m = fr.match(line.rstrip("\n"))
    if m:
        addr, sym, dso = m.groups()
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        frames.append((int(addr, 16), sym, dso))
flush(frames)
print(f"samples: {total}")
for name, n in layers.most_common():
    print(f"{100*n/total:6.1f}%  {name}")
print("\ntop leaves:")
for name, n in leaves.most_common(25):
    print(f"{100*n/total:6.1f}%  {name}")
