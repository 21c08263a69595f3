// libFuzzer entry point for the HTTP request parser (`make fuzz`). Compiled with
// swiftc -sanitize=fuzzer,address together with the parser's sources; not part of the package.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let parser = HTTPParser(maxHeaderBytes: 8192, maxBodyBytes: 65536)
    var input = bytes[...]
    // Take pipelined requests one at a time, as the server does.
    for _ in 0..<64 {
        switch parser.parse(input) {
        case .incomplete, .failure:
            return 0
        case .request(let request, let consumed):
            precondition(consumed > 0 && consumed <= input.count, "consumed \(consumed) of \(input.count)")
            precondition(request.path.hasPrefix("/") || request.path == "*")
            _ = request.keepAlive
            input = input.dropFirst(consumed)
        }
    }
    return 0
}
