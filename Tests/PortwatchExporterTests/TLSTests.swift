import Foundation
import Logging
import Testing
import PortwatchTestSupport
@testable import PortwatchExporter

/// The listener over TLS, checked with curl and openssl s_client.
@Suite(.serialized) struct TLSTests {
    static func server(_ settings: TLSSettings) throws -> HTTPServer {
        let exporter = Exporter(telemetryPath: "/metrics", state: {
            ExporterState(rows: [], counters: [], programs: [:], version: "t", revision: "t")
        }, ready: { true })
        let server = try HTTPServer(addresses: [ListenAddress(host: "127.0.0.1", port: 0)], tls: settings,
                                    logger: Logger(label: "t")) { exporter.handle($0) }
        server.start()
        return server
    }

    /// The subject of the certificate the server presents now.
    static func subject(_ port: UInt16) -> String {
        TestProcess.sh("echo | openssl s_client -connect 127.0.0.1:\(port) 2>/dev/null | openssl x509 -noout -subject").output
    }

    func curl(_ port: UInt16, _ certs: TestCertificates, _ extra: String = "") -> String {
        TestProcess.sh("curl -s -o /dev/null -w '%{http_code}' --cacert '\(certs.ca)' \(extra) https://127.0.0.1:\(port)/-/healthy").output
    }

    @Test func servesHTTPSAndRefusesOldTLSAndPlainText() throws {
        let certs = try TestCertificates()
        let s = try Self.server(TLSSettings(certFile: certs.serverCert, keyFile: certs.serverKey))
        defer { s.stop() }
        let port = s.boundPorts[0]
        #expect(curl(port, certs) == "200")
        #expect(curl(port, certs, "--tlsv1.2 --tls-max 1.2") == "200", "TLS 1.2 is accepted")
        // A client allowed to offer TLS 1.1 (Debian's OpenSSL refuses it by itself at the default
        // security level): the refusal must come from the server, as a protocol_version alert.
        let old = TestProcess.sh("echo | openssl s_client -connect 127.0.0.1:\(port) -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' 2>&1")
        #expect(old.status != 0, "TLS 1.1 must be refused: \(old.output.suffix(300))")
        #expect(!old.output.contains("no protocols available"), "the client did not offer TLS 1.1: \(old.output.suffix(300))")
        #expect(old.output.contains("alert protocol version"), "\(old.output.suffix(300))")
        // A plain-text client gets no answer and the server carries on.
        let plain = try? TestHTTP.get(port: port, path: "/-/healthy")
        #expect(plain?.status != 200)
        #expect(curl(port, certs) == "200")
    }

    @Test func clientCertificateRequired() throws {
        let certs = try TestCertificates()
        let s = try Self.server(TLSSettings(certFile: certs.serverCert, keyFile: certs.serverKey,
                                            clientCAFile: certs.ca, clientAuth: .requireAndVerify))
        defer { s.stop() }
        let port = s.boundPorts[0]
        #expect(curl(port, certs) != "200", "no client certificate, no answer")
        #expect(curl(port, certs, "--cert '\(certs.clientCert)' --key '\(certs.clientKey)'") == "200")
    }

    @Test func changedCertificateIsServedWithoutRestart() throws {
        let certs = try TestCertificates()
        let s = try Self.server(TLSSettings(certFile: certs.serverCert, keyFile: certs.serverKey))
        defer { s.stop() }
        let port = s.boundPorts[0]
        func subject() -> String { Self.subject(port) }
        #expect(subject().contains("server-one"))
        certs.reissueServer(commonName: "server-two")
        #expect(TestHTTP.waitUntil(5) { subject().contains("server-two") }, "still serving the old certificate")
    }

    /// cert-manager rotates a certificate in a Kubernetes Secret by swapping the volume's
    /// `..data` link: the `tls.crt` and `tls.key` links never change themselves.
    @Test func certificateRotatedInAKubernetesSecretIsServed() throws {
        let certs = try TestCertificates()
        func read(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }
        let secret = try KubernetesVolume(["tls.crt": try read(certs.serverCert), "tls.key": try read(certs.serverKey)])
        let s = try Self.server(TLSSettings(certFile: secret.path("tls.crt"), keyFile: secret.path("tls.key")))
        defer { s.stop() }
        let port = s.boundPorts[0]
        func subject() -> String { Self.subject(port) }
        #expect(subject().contains("server-one"))
        certs.reissueServer(commonName: "server-two")
        try secret.publish(["tls.crt": try read(certs.serverCert), "tls.key": try read(certs.serverKey)])
        #expect(TestHTTP.waitUntil(5) { subject().contains("server-two") }, "still serving the old certificate")
    }

    @Test func badFilesAreExplained() throws {
        #expect { try Self.server(TLSSettings(certFile: "/nonexistent.crt", keyFile: "/nonexistent.key")) } throws: {
            "\($0)".contains("/nonexistent.crt")
        }
    }
}
