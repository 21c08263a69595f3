import Foundation

/// A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate,
/// made with the openssl command.
public struct TestCertificates {
    public let dir: String
    public var ca: String { dir + "/ca.crt" }
    public var serverCert: String { dir + "/server.crt" }
    public var serverKey: String { dir + "/server.key" }
    public var clientCert: String { dir + "/client.crt" }
    public var clientKey: String { dir + "/client.key" }

    public init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let script = """
        set -e; cd '\(dir)'
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=portwatch-test-ca 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=server-one 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=prometheus 2>/dev/null
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 2>/dev/null
        """
        let result = TestProcess.sh(script)
        guard result.status == 0 else { throw POSIXError(.EIO) }
    }

    /// Replaces the server certificate with a new one whose subject is `name`.
    public func reissueServer(commonName name: String) {
        TestProcess.sh("""
        set -e; cd '\(dir)'
        openssl req -newkey rsa:2048 -nodes -keyout server2.key -out server2.csr -subj /CN=\(name) 2>/dev/null
        openssl x509 -req -in server2.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server2.crt -days 2 -extfile san.ext 2>/dev/null
        mv server2.key server.key; mv server2.crt server.crt
        """)
    }
}
