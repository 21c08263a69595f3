import Glibc
import PortwatchSystem

/// Why kernel capture cannot run, with what to do about it.
public struct CaptureError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// For a libbpf call that failed with `code` (a positive errno).
    static func libbpf(_ what: String, _ code: Int32) -> CaptureError {
        let reason = SystemError.text(code)
        switch code {
        case EACCES where geteuid() == 0:
            return CaptureError("\(what): the kernel's BPF verifier refused it (\(reason)); run with --log.level=debug for the verifier log")
        case EPERM where KernelChecks.chargesMemlock && !KernelChecks.memlockUnlimited:
            // Before Linux 5.11 maps are charged to RLIMIT_MEMLOCK, which libbpf could not raise.
            return CaptureError("\(what): \(reason): this kernel (Linux < 5.11) charges BPF maps to RLIMIT_MEMLOCK, \(KernelChecks.memlockText) here: raise it (docker run --ulimit memlock=-1, compose `ulimits: {memlock: -1}`, systemd LimitMEMLOCK=infinity; under Kubernetes, the container runtime's own LimitMEMLOCK) or run as root with CAP_SYS_RESOURCE")
        case EPERM, EACCES:
            return CaptureError("\(what): \(reason): run portwatch as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN (or CAP_BPF and CAP_PERFMON besides CAP_NET_ADMIN; see --log.level=debug for the libbpf log)")
        default:
            return CaptureError("\(what): \(reason) (errno \(code)); run with --log.level=debug for the libbpf log")
        }
    }
}

/// libbpf calls returning int give a negative errno.
@discardableResult
func check(_ what: @autoclosure () -> String, _ rc: Int32) throws -> Int32 {
    if rc < 0 { throw CaptureError.libbpf(what(), -rc) }
    return rc
}

/// libbpf calls returning a pointer give NULL and set errno.
func check<T>(_ what: @autoclosure () -> String, _ pointer: T?) throws -> T {
    guard let pointer else { throw CaptureError.libbpf(what(), errno == 0 ? EINVAL : errno) }
    return pointer
}
