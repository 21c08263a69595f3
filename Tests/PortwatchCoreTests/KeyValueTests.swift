import Testing
import PortwatchCore

/// Keys and owners hold the kernel's bytes, not text: what users see must still be the text
/// inet_ntop and the kernel's comm give, and every source of a key must compare alike.
@Suite struct KeyValueTests {
    /// Events are copied several times each on the capture path: with no reference in them a
    /// copy is plain bytes (a reference in every event cost the daemon a fifth more CPU).
    @Test func anEventHoldsNoReference() {
        #expect(_isPOD(BindingKey.self) && _isPOD(OwnerProcess.self) && _isPOD(PortEvent.self))
    }

    /// Nor does a transient listener as the reconciler finds it (a flood is made of them).
    @Test func aTransientSocketHoldsNoReference() {
        #expect(_isPOD(TransientSocket.self))
    }

    @Test func addressesReadBackAsInetNtopWritesThem() {
        let cases: [(String, AddressFamily)] = [
            ("0.0.0.0", .ipv4), ("127.0.0.1", .ipv4), ("10.20.30.40", .ipv4), ("255.255.255.255", .ipv4),
            ("::", .ipv6), ("::1", .ipv6), ("::ffff:127.0.0.1", .ipv6), ("fe80::1", .ipv6),
            ("2001:db8::8a2e:370:7334", .ipv6), ("2001:db8:0:1:1:1:1:1", .ipv6),
        ]
        for (text, family) in cases {
            let key = BindingKey(netns: 1, transport: .tcp, family: family, address: text, port: 80)
            #expect(key.address == text, "\(text) reads back as \(key.address)")
        }
        // Text in another spelling reads back in the canonical one.
        #expect(BindingKey(netns: 1, transport: .udp, family: .ipv6, address: "2001:0db8:0000:0000:0000:0000:0000:0001", port: 53).address == "2001:db8::1")
    }

    @Test func anIPv4AddressIsItsFirstFourBytesWhateverFollows() {
        // sock_diag zeroes what follows an IPv4 address; another source may not.
        let clean: [UInt8] = [10, 0, 0, 7] + Array(repeating: 0, count: 12)
        let dirty: [UInt8] = [10, 0, 0, 7] + Array(repeating: 0xab, count: 12)
        let a = clean.withUnsafeBytes { AddressBytes($0, family: .ipv4) }
        let b = dirty.withUnsafeBytes { AddressBytes($0, family: .ipv4) }
        let short = [UInt8]([10, 0, 0, 7]).withUnsafeBytes { AddressBytes($0, family: .ipv4) }
        #expect(a == b && a == short)
        #expect(a.text(.ipv4) == "10.0.0.7")
        let parsed = BindingKey(netns: 9, transport: .tcp, family: .ipv4, address: "10.0.0.7", port: 8080)
        let fromKernel = BindingKey(netns: 9, transport: .tcp, family: .ipv4, addressBytes: b, port: 8080)
        #expect(parsed == fromKernel && Set([parsed, fromKernel]).count == 1)
        // For IPv6 every byte counts.
        let v6 = dirty.withUnsafeBytes { AddressBytes($0, family: .ipv6) }
        #expect(v6 != a && v6.text(.ipv6) != "10.0.0.7")
    }

    @Test func keysSortByPortThenAddressByValue() {
        func key(_ address: String, _ port: UInt16) -> BindingKey {
            BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: address, port: port)
        }
        let sorted = [key("10.0.0.10", 80), key("10.0.0.2", 80), key("9.0.0.1", 22), key("192.168.0.1", 80)].sorted()
        #expect(sorted.map(\.description) == ["tcp/9.0.0.1:22@1", "tcp/10.0.0.2:80@1", "tcp/10.0.0.10:80@1", "tcp/192.168.0.1:80@1"])
    }

    @Test func aNameTheKernelCutMidCharacterComparesAlikeFromEverySource() {
        // 14 bytes of "ü" and the first byte of a 15th character: how the kernel cuts a long name.
        let long = String(repeating: "ü", count: 8)
        var raw = Array(long.utf8.prefix(15))
        raw += Array(repeating: 0, count: 16 - raw.count)
        let fromKernel = raw.withUnsafeBytes { ProcessName(kernel: $0) }
        // The ledger stores the text and reads it back.
        let fromLedger = ProcessName(fromKernel.text)
        #expect(fromKernel == fromLedger)
        #expect(Owner(pid: 1, name: fromKernel, uid: 0) == Owner(pid: 1, comm: fromKernel.text, uid: 0))
        #expect(fromKernel.text.hasPrefix(String(repeating: "ü", count: 7)))
    }

    @Test func namesReadBackAsGivenAndLongOnesAreCutAtACharacter() {
        for name in ["", "sshd", "systemd-resolve", "nginx: worker"] {
            #expect(Owner(pid: 1, comm: name, uid: 0).comm == name)
        }
        #expect(ProcessName("sshd") != ProcessName("sshd2") && ProcessName("") .isEmpty)
        let cut = ProcessName("a-name-longer-than-sixteen-bytes").text
        #expect(cut == "a-name-longer-th")
        // A character is never cut in two: 15 bytes of "é" and no half of the 9th.
        #expect(ProcessName(String(repeating: "é", count: 9)).text == String(repeating: "é", count: 8))
        var owner = Owner(pid: 7, comm: "old", uid: 0)
        owner.comm = "new"
        #expect(owner.comm == "new" && owner.name == ProcessName("new"))
    }

    /// Dictionaries of keys hash them with their own mixer, not SipHash: keys that differ in
    /// any one field (every port of one address, every address on one port, the namespace, the
    /// transport or family alone) must still spread over a table's buckets as random values
    /// do (63 % of the buckets for as many keys as buckets), under every seed.
    @Test func keysSpreadOverADictionarysBuckets() {
        let buckets = 1 << 16
        func spread(_ keys: [BindingKey], seed: Int) -> Double {
            var used = [Bool](repeating: false, count: buckets)
            for key in keys { used[key._rawHashValue(seed: seed) & (buckets - 1)] = true }
            return Double(used.filter { $0 }.count) / Double(min(keys.count, buckets))
        }
        let n = UInt32(buckets)
        let families: [(String, [BindingKey])] = [
            ("every port of one address", (0..<n).map { BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "10.0.0.1", port: UInt16($0)) }),
            ("every IPv4 address on one port", (0..<n).map { BindingKey(netns: 1, transport: .udp, family: .ipv4, address: "10.\($0 >> 8 & 255).\($0 & 255).1", port: 53) }),
            ("every IPv6 address on one port", (0..<n).map { BindingKey(netns: 1, transport: .tcp, family: .ipv6, address: "2001:db8::\(String($0, radix: 16))", port: 443) }),
            ("every namespace", (0..<n).map { BindingKey(netns: 4_026_531_840 &+ $0, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: 22) }),
        ]
        for seed in [0, 1, -1, 0x5eed_1234_abcd] {
            for (name, keys) in families {
                let share = spread(keys, seed: seed)
                #expect(share > 0.6, "\(name), seed \(seed): \(Int(share * 100)) % of the buckets used")
            }
        }
        // Transport and family alone change the hash.
        let k = BindingKey(netns: 1, transport: .tcp, family: .ipv4, address: "0.0.0.0", port: 80)
        var u = k; u.transport = .udp
        var six = k; six.family = .ipv6
        #expect(Set([k, u, six].map { $0._rawHashValue(seed: 7) }).count == 3)
    }
}

import Glibc

/// The text of an address is written by portwatch, not by inet_ntop: it must be the same text.
@Suite struct AddressTextTests {
    func ntop(_ bytes: [UInt8], _ family: AddressFamily) -> String {
        var out = [CChar](repeating: 0, count: 64)
        _ = bytes.withUnsafeBytes { inet_ntop(family == .ipv4 ? AF_INET : AF_INET6, $0.baseAddress, &out, 64) }
        return String(cString: out)
    }

    @Test func everyShapeOfAddressReadsAsInetNtopWritesIt() {
        var g = SystemRandomNumberGenerator()
        var cases: [[UInt8]] = []
        // Each hextet zero or not (every placement of zero runs), with random values.
        for mask in 0..<256 {
            for _ in 0..<4 {
                var bytes = [UInt8](repeating: 0, count: 16)
                for w in 0..<8 where mask & (1 << w) != 0 {
                    let value = [UInt16(1), 0xffff, 0x00ab, 0x0c00, UInt16.random(in: 1...UInt16.max, using: &g)].randomElement(using: &g)!
                    bytes[2 * w] = UInt8(value >> 8)
                    bytes[2 * w + 1] = UInt8(value & 0xff)
                }
                cases.append(bytes)
            }
        }
        // IPv4-mapped and -compatible forms, and their near misses.
        for prefix in [[UInt8](repeating: 0, count: 10) + [0xff, 0xff], [UInt8](repeating: 0, count: 12),
                       [UInt8](repeating: 0, count: 10) + [0xff, 0xfe], [0, 1] + [UInt8](repeating: 0, count: 8) + [0xff, 0xff]] {
            for tail: [UInt8] in [[127, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0], [10, 0, 0, 0], [255, 255, 255, 255], [0, 1, 0, 0]] {
                cases.append(prefix + tail)
            }
        }
        for bytes in cases {
            let address = bytes.withUnsafeBytes { AddressBytes($0, family: .ipv6) }
            #expect(address.text(.ipv6) == ntop(bytes, .ipv6), "\(bytes)")
        }
        for _ in 0..<2000 {
            let bytes = (0..<4).map { _ in [UInt8(0), 1, 9, 10, 99, 100, 199, 255, UInt8.random(in: 0...255, using: &g)].randomElement(using: &g)! }
            let address = bytes.withUnsafeBytes { AddressBytes($0, family: .ipv4) }
            #expect(address.text(.ipv4) == ntop(bytes, .ipv4), "\(bytes)")
        }
    }
}

/// A key's exposure comes from its bytes; the ledger's readers take it from the stored text
/// (the address written and parsed back). Both must give the same answer for every address;
/// `ExposureTests` holds the expected answers.
@Suite struct ExposureFromBytesTests {
    @Test func bytesAndTextAgreeOnEveryKindOfAddress() {
        var g = SystemRandomNumberGenerator()
        var cases: [([UInt8], AddressFamily)] = []
        let firstOctets: [UInt8] = [0, 1, 9, 10, 11, 126, 127, 128, 169, 172, 192, 223, 255]
        for first in firstOctets {
            for second: UInt8 in [0, 1, 15, 16, 31, 32, 168, 254, 255] {
                for rest: [UInt8] in [[0, 0], [0, 1], [1, 0], [UInt8.random(in: 0...255, using: &g), UInt8.random(in: 0...255, using: &g)]] {
                    let v4 = [first, second] + rest
                    cases.append((v4, .ipv4))
                    cases.append(([UInt8](repeating: 0, count: 10) + [0xff, 0xff] + v4, .ipv6))
                    cases.append(([UInt8](repeating: 0, count: 12) + v4, .ipv6))
                    cases.append(([UInt8](repeating: 0, count: 10) + [0xff, 0xfe] + v4, .ipv6))
                }
            }
        }
        for hextet: UInt16 in [0, 1, 0x2001, 0xfc00, 0xfd12, 0xfe00, 0xfe80, 0xfebf, 0xfec0, 0xff02, 0xffff] {
            for tail: [UInt8] in [[UInt8](repeating: 0, count: 14), [UInt8](repeating: 0, count: 13) + [1],
                                  (0..<14).map { _ in UInt8.random(in: 0...255, using: &g) }] {
                cases.append(([UInt8(hextet >> 8), UInt8(hextet & 0xff)] + tail, .ipv6))
            }
        }
        for (bytes, family) in cases {
            let address = bytes.withUnsafeBytes { AddressBytes($0, family: family) }
            let key = BindingKey(netns: 1, transport: .tcp, family: family, addressBytes: address, port: 80)
            #expect(key.exposure == Exposure(address: key.address, family: family), "\(key.address)")
        }
        #expect(BindingKey(netns: 1, transport: .udp, family: .ipv6, address: "::ffff:10.1.2.3", port: 53).exposure == .private)
        #expect(BindingKey(netns: 1, transport: .udp, family: .ipv4, address: "0.0.0.0", port: 53).exposure == .wildcard)
    }
}
