import CBPF
import Foundation
import Glibc
import Testing
import PortwatchTestSupport

extension KernelSuite {
    /// Stopping the daemon leaves nothing attached: its programs are gone from the kernel.
    @Suite struct DetachTests {
        /// IDs of loaded BPF programs named like portwatch's.
        static func portwatchPrograms() -> Set<UInt32> {
            var ids = Set<UInt32>()
            var id: UInt32 = 0
            while bpf_prog_get_next_id(id, &id) == 0 {
                let fd = bpf_prog_get_fd_by_id(id)
                guard fd >= 0 else { continue }
                defer { close(fd) }
                var info = bpf_prog_info()
                var length = UInt32(MemoryLayout<bpf_prog_info>.size)
                guard bpf_obj_get_info_by_fd(fd, &info, &length) == 0 else { continue }
                let name = withUnsafeBytes(of: &info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name.hasPrefix("pw_") { ids.insert(id) }
            }
            return ids
        }

        @Test(arguments: [SIGTERM, SIGINT])
        func signalDetachesEverything(signal: Int32) throws {
            let before = Self.portwatchPrograms()
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            let ours = Self.portwatchPrograms().subtracting(before)
            #expect(ours.count == 10, "the daemon loads ten programs (no sockops: nothing runs per connection beyond a state change): \(ours)")
            kill(d.process.processIdentifier, signal)
            d.process.waitUntilExit()
            #expect(d.process.terminationStatus == 0)
            #expect(TestHTTP.waitUntil(5) { Self.portwatchPrograms().isDisjoint(with: ours) }, "programs left in the kernel")
            #expect(d.log.contains("BPF programs detached"))
        }

        /// `systemctl reload` sends SIGHUP; without a policy file there is nothing to reload,
        /// and the daemon must go on (Restart=on-failure would not bring it back).
        @Test func hangupWithoutAPolicyKeepsItRunning() throws {
            let d = try DaemonHarness()
            guard d.waitReady() else { return }
            kill(d.process.processIdentifier, SIGHUP)
            #expect(TestHTTP.waitUntil(5) { d.log.contains("nothing to reload") }, "\(d.log)")
            #expect(d.process.isRunning)
            let (fd, port) = TestSockets.bound("127.0.0.1")
            defer { close(fd) }
            #expect(TestHTTP.waitUntil(5) { d.portInfo(port: port, transport: "tcp") != nil }, "still capturing after SIGHUP")
            #expect(d.stop() == 0)
        }
    }
}
