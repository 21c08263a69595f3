import Glibc

/// A failed system call: the operation it was for and the errno it set. The one place
/// errno becomes text.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    /// errno's text, as strerror(3) gives it.
    public static func text(_ code: Int32) -> String { String(cString: strerror(code)) }

    public var description: String { "\(operation): \(Self.text(errno))" }
}
