import PortwatchSystem
import COpenSSL
import FoundationEssentials
import Glibc
import Logging

/// TLS for the HTTP listener (OpenSSL): certificate and key files, TLS 1.2 at least,
/// optional client certificates checked against a CA file.
public struct TLSSettings: Sendable, Equatable {
    public enum ClientAuth: String, Sendable {
        case none = "NoClientCert"
        case verifyIfGiven = "VerifyClientCertIfGiven"
        case requireAndVerify = "RequireAndVerifyClientCert"
    }

    public var certFile: String
    public var keyFile: String
    public var clientCAFile: String?
    public var clientAuth: ClientAuth
    /// TLS 1.3 only (else 1.2 and up).
    public var minimumTLS13: Bool

    public init(certFile: String, keyFile: String, clientCAFile: String? = nil, clientAuth: ClientAuth = .none, minimumTLS13: Bool = false) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
        self.clientAuth = clientAuth
        self.minimumTLS13 = minimumTLS13
    }

    var files: [String] { [certFile, keyFile] + (clientCAFile.map { [$0] } ?? []) }
}

/// OpenSSL's functions, loaded from libssl the first time TLS is configured.
enum OpenSSL {
    private static let loaded: Result<pw_openssl, SystemError> = {
        var api = pw_openssl()
        if let failure = pw_openssl_load(&api) {
            return .failure(SystemError("TLS needs OpenSSL 3 (\(PW_OPENSSL_LIBRARY)): \(String(cString: failure))", errno: ENOENT))
        }
        return .success(api)
    }()

    static func load() throws -> pw_openssl { try loaded.get() }
}

/// One SSL_CTX, rebuilt when the certificate, key or CA files change (new connections
/// get the new one; a broken file keeps the old context and is logged).
final class TLSContext {
    let settings: TLSSettings
    let api: pw_openssl
    private(set) var context: OpaquePointer
    private var watch: FileWatch
    /// When the certificate files are next looked at (each second, from the server's loop).
    private(set) var nextCheck = 0.0

    init(_ settings: TLSSettings) throws {
        self.settings = settings
        api = try OpenSSL.load()
        watch = FileWatch(paths: settings.files)
        context = try Self.make(settings, api: api)
    }

    deinit { api.SSL_CTX_free(context) }

    static func error(_ what: String, api: pw_openssl) -> SystemError {
        var text = [CChar](repeating: 0, count: 256)
        withUnsafePointer(to: api) { pw_ssl_error_text($0, &text, text.count) }
        return SystemError("\(what): \(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))", errno: EINVAL)
    }

    static func make(_ s: TLSSettings, api: pw_openssl) throws -> OpaquePointer {
        func failure(_ what: String) -> SystemError { error(what, api: api) }
        guard let ctx = api.SSL_CTX_new(api.TLS_server_method()) else { throw failure("cannot create a TLS context") }
        do {
            let minimum = withUnsafePointer(to: api) { pw_ssl_ctx_min_version($0, ctx, s.minimumTLS13 ? 1 : 0) }
            guard minimum == 1 else { throw failure("cannot set the minimum TLS version") }
            _ = withUnsafePointer(to: api) { pw_ssl_ctx_partial_writes($0, ctx) }
            guard api.SSL_CTX_use_certificate_chain_file(ctx, s.certFile) == 1 else { throw failure("cannot use the certificate \(s.certFile)") }
            guard api.SSL_CTX_use_PrivateKey_file(ctx, s.keyFile, SSL_FILETYPE_PEM) == 1 else { throw failure("cannot use the key \(s.keyFile)") }
            guard api.SSL_CTX_check_private_key(ctx) == 1 else { throw failure("the key \(s.keyFile) does not match \(s.certFile)") }
            if s.clientAuth != .none {
                guard let ca = s.clientCAFile, api.SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else {
                    throw failure("client certificates need a readable client_ca_file")
                }
                let mode = s.clientAuth == .requireAndVerify ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER
                api.SSL_CTX_set_verify(ctx, mode, nil)
            }
            return ctx
        } catch {
            api.SSL_CTX_free(ctx)
            throw error
        }
    }

    /// Checks the files at most once a second.
    func reloadIfChanged(now: Double, logger: Logger) {
        guard now >= nextCheck else { return }
        nextCheck = now + 1
        guard watch.changed() else { return }
        do {
            let fresh = try Self.make(settings, api: api)
            api.SSL_CTX_free(context)
            context = fresh
            logger.info("TLS certificate reloaded", metadata: ["cert": "\(settings.certFile)"])
        } catch {
            logger.error("TLS files changed but cannot be used; keeping the previous certificate", metadata: ["error": "\(error)"])
        }
    }
}

/// A server-side TLS session over a non-blocking socket.
final class TLSStream {
    enum Progress { case bytes(Int), wait, closed }

    private let ssl: OpaquePointer
    private let api: pw_openssl
    /// OpenSSL needs the socket writable before it can go on (handshake or write).
    private(set) var wantsWrite = false

    init?(context: TLSContext, fd: Int32) {
        api = context.api
        guard let ssl = api.SSL_new(context.context) else { return nil }
        self.ssl = ssl
        _ = api.SSL_set_fd(ssl, fd)
        api.SSL_set_accept_state(ssl)
    }

    deinit { api.SSL_free(ssl) }

    private func progress(_ rc: Int32) -> Progress {
        if rc > 0 { wantsWrite = false; return .bytes(Int(rc)) }
        switch api.SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ: wantsWrite = false; return .wait
        case SSL_ERROR_WANT_WRITE: wantsWrite = true; return .wait
        default: api.ERR_clear_error(); return .closed
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> Progress {
        progress(api.SSL_read(ssl, buffer.baseAddress, Int32(buffer.count)))
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> Progress {
        progress(api.SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max)))))
    }

    /// Bytes already decrypted and waiting in OpenSSL (no socket event will announce them).
    var pending: Bool { api.SSL_pending(ssl) > 0 }
}
