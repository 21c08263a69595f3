import Foundation
import Glibc
import Testing
import PortwatchTestSupport

/// Who holds the port, with real cgroups made under the cgroup v2 root: the systemd unit a
/// process runs in, and the container and pod a runtime's state on disk names.
extension KernelSuite {
    @Suite struct AttributionIntegrationTests {
        /// The cgroup v2 mount, from /proc/mounts.
        static var cgroupRoot: String {
            let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
            for line in mounts.split(separator: "\n") {
                let fields: [Substring] = line.split(separator: " ")
                if fields.count > 2 && fields[2] == "cgroup2" { return String(fields[1]) }
            }
            return "/sys/fs/cgroup"
        }

        /// Makes a cgroup path under the root; removed (deepest first) by `remove`.
        final class Cgroup {
            let components: [String]
            let path: String
            init(_ relative: String) throws {
                components = relative.split(separator: "/").map(String.init)
                path = AttributionIntegrationTests.cgroupRoot + "/" + relative
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            }
            deinit {
                for depth in stride(from: components.count, to: 0, by: -1) {
                    rmdir(AttributionIntegrationTests.cgroupRoot + "/" + components.prefix(depth).joined(separator: "/"))
                }
            }
        }

        /// A child that moves itself into `cgroup`, then binds and (TCP) listens.
        func listener(in cgroup: Cgroup, transport: String = "tcp") throws -> (ChildProcess, UInt16) {
            let child = try ChildProcess("""
            open("\(cgroup.path)/cgroup.procs", "w").write(str(os.getpid()))
            s = \(transport)()
            say(s.getsockname()[1])
            wait()
            """)
            return (child, try #require(UInt16(child.line() ?? "")))
        }

        /// A TCP listener (named again at listen) and a bound UDP socket (named at bind only).
        @Test(arguments: ["tcp", "udp"])
        func aSystemdUnitIsNamed(transport: String) throws {
            let cgroup = try Cgroup("pwtest.slice/pwtest-web-\(transport).service")
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let (child, port) = try listener(in: cgroup, transport: transport)
            #expect(d.waitShown(port, transport, ["unit=\"pwtest-web-\(transport).service\"", "pid=\"\(child.pid)\"", "exposure=\"loopback\""]) != nil,
                    "\(d.portInfo(port: port, transport: transport) ?? "not listed")")
            child.kill()
            #expect(d.waitGone(port, transport))
            #expect(try TestBinaries.run("portwatch", ["history", "--db.path", d.dbPath, "--port", "\(port)"]).stdout.contains("pwtest-web-\(transport).service"))
        }

        @Test func aKubernetesPodIsNamedFromContainerdsState() throws {
            let id = String(repeating: "5e", count: 32)
            let cgroup = try Cgroup("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc0ffee00_1234.slice/cri-containerd-\(id).scope")
            let rootfs = FileManager.default.temporaryDirectory.appendingPathComponent("pw-host-\(UUID().uuidString)").path
            let bundle = rootfs + "/run/containerd/io.containerd.runtime.v2.task/k8s.io/\(id)"
            try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
            try """
            {"annotations":{"io.kubernetes.cri.sandbox-name":"web-5d8f","io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.container-name":"nginx"}}
            """.write(toFile: bundle + "/config.json", atomically: true, encoding: .utf8)
            let d = try DaemonHarness(arguments: ["--path.rootfs", rootfs])
            guard d.waitReady() else { return }
            let (child, port) = try listener(in: cgroup)
            let line = d.waitShown(port, "tcp", ["pod=\"web-5d8f\"", "namespace=\"shop\"", "container=\"nginx\"", "container_id=\"\(id)\""])
            #expect(line != nil, "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            #expect(line?.contains("unit=\"\"") == true, "a container's scope is not a unit")
            let ls = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--port", "\(port)"]).stdout
            #expect(ls.contains("shop/web-5d8f"), "\(ls)")
            child.kill()
        }

        @Test func aListenerOlderThanTheDaemonIsNamedByTheSnapshot() throws {
            let cgroup = try Cgroup("pwtest.slice/pwtest-old.service")
            let (child, port) = try listener(in: cgroup)
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            #expect(d.portInfo(port: port, transport: "tcp")?.contains("unit=\"pwtest-old.service\"") == true,
                    "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            child.kill()
        }

        /// A socket bound before the daemon started (the kernel learns it from the snapshot,
        /// which has no cgroup) and listening afterwards is named by its process's unit.
        @Test func aSocketBoundBeforeTheDaemonThatListensAfterIsNamed() throws {
            let cgroup = try Cgroup("pwtest.slice/pwtest-late.service")
            let child = try ChildProcess("""
            open("\(cgroup.path)/cgroup.procs", "w").write(str(os.getpid()))
            \(ChildProcess.bindsThenListensWhenTold)
            """)
            defer { child.kill() }
            let port = try #require(UInt16(child.line() ?? ""))
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            child.send("listen")
            #expect(child.line() == "listening")
            #expect(d.waitShown(port, "tcp", ["state=\"listen\"", "unit=\"pwtest-late.service\"", "pid=\"\(child.pid)\""]) != nil,
                    "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
        }

        /// The row names the process that holds the socket now, recorded as a `holder` update.
        func waitHolder(_ d: DaemonHarness, _ port: UInt16, pid: Int32, _ parts: [String] = []) -> Bool {
            d.waitShown(port, "tcp", ["pid=\"\(pid)\""] + parts) != nil
        }

        /// The owner as the programs read it from the current task, by plain loads from the
        /// task's BTF pointer (Linux 6.1+) or by checked reads (5.10, or asked for with
        /// PORTWATCH_BPF_TASK_BTF=0): a worker thread with a name of its own binds, the process
        /// drops to nobody, its main thread listens. The socket's cookie and namespace likewise,
        /// through the program's context cast to the kernel's socket (6.2+). PORTWATCH_BPF_TASK_BTF=1
        /// skips the kernel probes: on 6.1 the kernel refuses the cast and on 5.10 both, and the
        /// daemon falls back.
        @Test(arguments: ["", "0", "1"])
        func theOwnerIsTheProcessNotTheThreadAndListenReadsItAgain(setting: String) throws {
            let cgroup = try Cgroup("pwtest.slice/pwtest-owner-\(setting.isEmpty ? "probed" : setting).service")
            let d = try DaemonHarness(environment: setting.isEmpty ? [:] : ["PORTWATCH_BPF_TASK_BTF": setting])
            guard d.waitReady() else { return }
            let allowed = !KernelRelease.isBefore(6, 1)
            let plainLoads = setting != "0" && allowed
            let castAllowed = !KernelRelease.isBefore(6, 2)
            #expect(d.sample("portwatch_kernel_feature{feature=\"bpf_task_btf\"}") == (plainLoads ? 1 : 0), "kernel \(KernelRelease.text)")
            #expect(d.sample("portwatch_kernel_feature{feature=\"bpf_cast_to_kern_ctx\"}") == (setting != "0" && castAllowed ? 1 : 0),
                    "kernel \(KernelRelease.text)")
            // Logged before the "listening" line the harness waited for.
            #expect(d.log.contains("checked kernel reads") == !plainLoads, "\(d.log)")
            #expect(d.log.contains("the kernel refused the BPF programs that read the owner with plain loads") == (setting == "1" && !allowed), "\(d.log)")
            #expect(d.log.contains("the kernel refused the BPF programs that read the socket through their context") == (setting == "1" && !castAllowed),
                    "\(d.log)")
            let child = try ChildProcess("""
            import ctypes, threading
            open("\(cgroup.path)/cgroup.procs", "w").write(str(os.getpid()))
            box = {}
            def work():
                ctypes.CDLL(None).prctl(15, b"pwbinder", 0, 0, 0)
                box["s"] = tcp(listen=False)
                box["tid"] = threading.get_native_id()
            t = threading.Thread(target=work); t.start(); t.join()
            say(box["s"].getsockname()[1], box["tid"])
            wait()
            os.setresuid(65534, 65534, 65534)
            box["s"].listen()
            say("listening")
            wait()
            """)
            let said = (child.line() ?? "").split(separator: " ")
            let port = try #require(said.first.flatMap { UInt16($0) })
            #expect(said.last != "\(child.pid)", "the socket was bound on another thread")
            let holder = ["pid=\"\(child.pid)\"", "comm=\"\(child.comm)\"", "unit=\"pwtest-owner-\(setting.isEmpty ? "probed" : setting).service\""]
            #expect(d.waitShown(port, "tcp", ["state=\"bound\""] + holder) != nil, "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            #expect(try owner(d, port)?["uid"] as? Int == 0)
            child.send("listen")
            #expect(child.line() == "listening")
            #expect(d.waitShown(port, "tcp", ["state=\"listen\""] + holder) != nil, "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            #expect(try owner(d, port)?["uid"] as? Int == 65534, "the uid is read again at listen")
            child.kill()
        }

        /// The ledger's row for a TCP port, from `portwatch ls --output json`.
        func owner(_ d: DaemonHarness, _ port: UInt16) throws -> [String: Any]? {
            let out = try TestBinaries.run("portwatch", ["ls", "--db.path", d.dbPath, "--port", "\(port)", "--protocol", "tcp", "--output", "json"]).stdout
            return (try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]])?.first
        }

        /// With the default 5m resync: the owner's exit itself brings the lookup.
        @Test func theBinderExitsAfterAForkAndTheChildIsNamed() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let child = try ChildProcess("""
            s = tcp()
            say(s.getsockname()[1])
            wait()
            pid = os.fork()
            if pid == 0:
                import time
                os.close(0); os.close(1)
                time.sleep(600)
                os._exit(0)
            say(pid)
            os._exit(0)
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(d.waitShown(port, "tcp", ["pid=\"\(child.pid)\""]) != nil)
            child.send("fork")
            let worker = try #require(Int32(child.line() ?? ""))
            defer { kill(worker, SIGKILL) }
            #expect(TestHTTP.waitUntil(DaemonHarness.deadline) { ChildProcess.hasExited(child.pid) })
            #expect(waitHolder(d, port, pid: worker), "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            #expect(d.history(port: port, transport: "tcp") == ["insert:", "update:holder"])
        }

        @Test func aSocketHandedOverToAnotherUnitNamesTheHolder() throws {
            // systemd socket activation, in small: a process in one unit binds and passes the
            // socket over SCM_RIGHTS to a process in another unit, then closes its copy.
            let binderUnit = try Cgroup("pwtest.slice/pwtest-activator.socket.scope")
            let serverUnit = try Cgroup("pwtest.slice/pwtest-server.service")
            let d = try DaemonHarness(arguments: ["--resync.interval", "1s"])
            guard d.waitReady() else { return }
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString).sock").path
            let server = try ChildProcess("""
            open("\(serverUnit.path)/cgroup.procs", "w").write(str(os.getpid()))
            u = socket.socket(socket.AF_UNIX)
            u.bind("\(path)"); u.listen()
            say("ready")
            c, _ = u.accept()
            msg, fds, _, _ = socket.recv_fds(c, 16, 1)
            s = socket.socket(fileno=fds[0])
            say(s.getsockname()[1])
            wait()
            """)
            #expect(server.line() == "ready")
            let binder = try ChildProcess("""
            open("\(binderUnit.path)/cgroup.procs", "w").write(str(os.getpid()))
            s = tcp()
            u = socket.socket(socket.AF_UNIX); u.connect("\(path)")
            socket.send_fds(u, [b"x"], [s.fileno()])
            s.close()
            say("sent")
            wait()
            """)
            #expect(binder.line() == "sent")
            let port = try #require(UInt16(server.line() ?? ""))
            #expect(waitHolder(d, port, pid: server.pid, ["unit=\"pwtest-server.service\""]),
                    "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            binder.kill()
            server.kill()
        }

        @Test func aProgramThatExecsIsNamedByItsNewName() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let child = try ChildProcess("""
            s = tcp()
            os.set_inheritable(s.fileno(), True)
            say(s.getsockname()[1])
            wait()
            os.execv("/bin/sleep", ["sleep", "600"])
            """)
            let port = try #require(UInt16(child.line() ?? ""))
            #expect(d.waitShown(port, "tcp", ["comm=\"\(child.comm)\""]) != nil)
            child.send("exec")
            #expect(waitHolder(d, port, pid: child.pid, ["comm=\"sleep\""]), "\(d.portInfo(port: port, transport: "tcp") ?? "not listed")")
            child.kill()
        }
    }
}
