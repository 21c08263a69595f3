#!/usr/bin/env python3
"""Kernel-level fidelity soak: churns real sockets of every kind against a running portwatch
with its default flags (periodic resync included; SOAK_RESYNC=30s makes resyncs frequent),
beside a network namespace no process is in (kept by a bind mount, as `ip netns add` keeps
it) holding a kernel VXLAN socket; pauses at checkpoints and compares the table with `ss` in
every network namespace. Passes with 0 differences, 0 lost events, 0 resync corrections
after start-up and a flat RSS after warm-up.

    Tests/Soak/soak.py BINARY [MINUTES]        (make soak; SOAK_MINUTES, default 10)
"""
import ctypes, os, random, re, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request

binary = sys.argv[1]
minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
random.seed(int(os.environ.get("SOAK_SEED", time.time())))
socket.setdefaulttimeout(0.5)  # a client connecting to a full backlog must not stall a worker

work = tempfile.mkdtemp(prefix="pw-soak-")
log = open(os.path.join(work, "portwatch.log"), "w+")
# A namespace with no process in it, holding the kernel's VXLAN socket.
quiet_ns = f"pwsoak{os.getpid()}"
subprocess.run(["ip", "netns", "add", quiet_ns], check=True)
subprocess.run(["ip", "-n", quiet_ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789"], check=True)
subprocess.run(["ip", "-n", quiet_ns, "link", "set", "vx0", "up"], check=True)
resync = ["--resync.interval", os.environ["SOAK_RESYNC"]] if os.environ.get("SOAK_RESYNC") else []
daemon = subprocess.Popen([binary, "--web.listen-address", "127.0.0.1:0", "--db.path", os.path.join(work, "pw.db")] + resync, stderr=log)

def port_of_daemon():
    for _ in range(300):
        log.seek(0)
        m = re.search(r" ports=(\d+)", log.read())
        if m: return int(m.group(1))
        if daemon.poll() is not None: break
        time.sleep(0.1)
    sys.exit("soak: portwatch did not start:\n" + open(log.name).read())

web = port_of_daemon()

def scrape():
    return urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=10).read().decode()

def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "): return float(line.split()[-1])
    return 0.0

def wait(cond, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            if cond(): return True
        except OSError:  # not ready yet (503), or not listening yet
            pass
        time.sleep(0.05)
    return False

wait(lambda: urllib.request.urlopen(f"http://127.0.0.1:{web}/-/ready", timeout=5).status == 200)
start_corrections = None

# --- churn -------------------------------------------------------------------------------
paused = threading.Event()
idle = threading.Semaphore(0)
stop = threading.Event()
children = set()                 # forked holders of every worker, reaped at checkpoints
children_lock = threading.Lock()

def tcp(family=socket.AF_INET, addr="127.0.0.1", port=0, listen=True, reuse=False):
    s = socket.socket(family)
    if reuse: s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6 and addr == "::": s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((addr, port))
    if listen: s.listen()
    return s

def one_round(held, mine):
    kind = random.randrange(10)
    if kind == 0: held.append(tcp())
    elif kind == 1: held.append(tcp(socket.AF_INET6, "::1"))
    elif kind == 2: held.append(tcp(socket.AF_INET6, "::"))                     # dual-stack
    elif kind == 3:
        s = socket.socket(); s.listen(); held.append(s)                       # listen without bind
    elif kind == 4:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); held.append(u)
    elif kind == 5:                                                           # bind, then connect: a client
        server = held[0]
        c = socket.socket(); c.bind(("127.0.0.1", 0)); c.connect(server.getsockname()); held.append(c)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); u.connect(("127.0.0.1", 9)); held.append(u)
    elif kind == 6:                                                           # SO_REUSEPORT group
        a = tcp(reuse=True); b = tcp(port=a.getsockname()[1], reuse=True); held += [a, b]
    elif kind == 7:                                                           # SCM_RIGHTS hand-over
        s = tcp(); x, y = socket.socketpair(socket.AF_UNIX)
        socket.send_fds(x, [b"x"], [s.fileno()]); _, fds, _, _ = socket.recv_fds(y, 1, 1)
        s.close(); x.close(); y.close(); held.append(socket.socket(fileno=fds[0]))
    elif kind == 8:                                                           # fork-inherited, SIGKILLed holder, other netns
        pid = os.fork()
        if pid == 0:
            try:
                if random.random() < 0.5: libc.unshare(CLONE_NEWNET)
                kept = [tcp(socket.AF_INET, "127.0.0.1") for _ in range(2)]
                time.sleep(random.uniform(0.1, 3))
            finally:
                os._exit(0)
        mine.append(pid)
        with children_lock: children.add(pid)
    else:                                                                     # release something
        while len(held) > 1 and random.random() < 0.7:
            held.pop(random.randrange(1, len(held))).close()

def churn():
    held, mine = [tcp()], []
    while not stop.is_set():
        if paused.is_set():
            idle.release()
            while paused.is_set() and not stop.is_set(): time.sleep(0.01)
            continue
        try: one_round(held, mine)
        except OSError: pass
        if len(held) > 200:
            for s in held[1:100]: s.close()
            del held[1:100]
        for pid in list(mine):
            if random.random() < 0.05:
                try: os.kill(pid, signal.SIGKILL)
                except ProcessLookupError: pass
            try: done = os.waitpid(pid, os.WNOHANG)[0] != 0
            except ChildProcessError: done = True
            if done:
                mine.remove(pid)
                with children_lock: children.discard(pid)
    idle.release()

workers = [threading.Thread(target=churn, daemon=True) for _ in range(3)]
for w in workers: w.start()

# --- checkpoints -------------------------------------------------------------------------
def namespaces():
    """netns inode -> a path that enters it: a process's, or a bind mount under /run/netns."""
    seen = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try: seen.setdefault(os.readlink(f"/proc/{pid}/ns/net")[5:-1], f"/proc/{pid}/ns/net")
        except OSError: pass
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        seen.setdefault(str(os.stat(f"/run/netns/{name}").st_ino), f"/run/netns/{name}")
    return seen

def truth():
    """(netns, proto, address, port) of TCP listeners and unconnected UDP sockets, per ss."""
    out = set()
    for ns, path in namespaces().items():
        r = subprocess.run(["nsenter", f"--net={path}", "ss", "-Htuln"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) < 6: continue
            local, peer = f[4], f[5]
            if f[0] == "udp" and peer not in ("0.0.0.0:*", "[::]:*", "*:*"): continue
            addr, port = local.rsplit(":", 1)
            addr = addr.strip("[]").split("%")[0]
            if addr == "*": addr = "::"        # ss prints a dual-stack IPv6 wildcard as *
            out.add((ns, f[0], addr, port))
    return out

def table(text):
    out = set()
    for line in text.splitlines():
        if not line.startswith("portwatch_port_info{"): continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels["protocol"] == "tcp" and labels["state"] == "bound": continue   # ss cannot list those here
        out.add((labels["netns"], labels["protocol"], labels["address"], labels["port"]))
    return out

def rss():
    for line in open(f"/proc/{daemon.pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return 0

differences, rss_samples, checkpoint, corrected = 0, [], 0, 0.0
deadline = time.time() + minutes * 60
while time.time() < deadline:
    time.sleep(min(20, max(1, deadline - time.time())))
    paused.set()
    for _ in workers: idle.acquire()
    with children_lock: forked = list(children)                  # stop the forked holders
    for pid in forked:
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass
    for pid in forked:                                           # reaped by their worker later
        wait(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z"), 5)
    marker = tcp()
    needle = f'port="{marker.getsockname()[1]}"'
    wait(lambda: needle in scrape())                             # every earlier event applied
    marker.close()
    wait(lambda: needle not in scrape())
    # A socket released just now may still be inside the window: compare until they agree or 2 s pass.
    agreed = wait(lambda: table(scrape()) == truth(), 2)
    text = scrape()
    missing, extra = truth() - table(text), table(text) - truth()
    corrections = value(text, 'portwatch_resync_corrections_total{action="insert"}') + value(text, 'portwatch_resync_corrections_total{action="delete"}')
    if start_corrections is None: start_corrections = corrections
    corrected = corrections - start_corrections
    checkpoint += 1
    rss_samples.append(rss())
    print(f"checkpoint {checkpoint}: {len(truth())} listeners, missing {len(missing)}, extra {len(extra)}, "
          f"lost {value(text, 'portwatch_events_lost_total'):.0f}, corrections since start {corrections - start_corrections:.0f}, "
          f"RSS {rss_samples[-1]:.1f} MiB", flush=True)
    if not agreed:
        differences += len(missing) + len(extra)
        for d in sorted(missing)[:10]: print("  missing from portwatch:", d)
        for d in sorted(extra)[:10]: print("  not in the kernel:", d)
    paused.clear()

stop.set()
paused.clear()
text = scrape()
daemon.send_signal(signal.SIGTERM)
daemon.wait(30)
subprocess.run(["ip", "netns", "del", quiet_ns])
lost = value(text, "portwatch_events_lost_total")
print(f"soak: {value(text, 'portwatch_resyncs_total'):.0f} resyncs, {value(text, 'portwatch_holder_checks_total'):.0f} holder checks "
      f"for owners that exited or exec'd", flush=True)
warm = rss_samples[len(rss_samples) // 3:] or rss_samples
growth = (max(warm) / min(warm) - 1) if warm and min(warm) > 0 else 0
kernel_held = any(l.startswith("portwatch_port_info{") and 'port="4789"' in l and 'comm="kernel"' in l and 'pid="0"' in l
                  for l in text.splitlines())
if not kernel_held: print("soak: the VXLAN port in the namespace no process is in is not shown as the kernel's", flush=True)
ok = differences == 0 and lost == 0 and corrected == 0 and growth < 0.2 and daemon.returncode == 0 and kernel_held
print(f"soak: {checkpoint} checkpoints over {minutes:g} min: {differences} differences, {lost:.0f} lost, {corrected:.0f} corrections, "
      f"RSS after warm-up {min(warm):.1f}..{max(warm):.1f} MiB; {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
