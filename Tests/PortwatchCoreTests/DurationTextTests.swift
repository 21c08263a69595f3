import Testing
import PortwatchCore

@Suite struct DurationTextTests {
    let s: UInt64 = 1_000_000_000

    @Test func wordsDurationsAsPeopleReadThem() {
        #expect(DurationText.format(0) == "0ms")
        #expect(DurationText.format(5_400_000) == "5ms")
        #expect(DurationText.format(999_999_999) == "999ms")
        #expect(DurationText.format(s) == "1s")
        #expect(DurationText.format(90 * s) == "1m30s")
        #expect(DurationText.format(3600 * s) == "1h", "parts that are zero are left out")
        #expect(DurationText.format((86400 + 2 * 3600 + 3 * 60 + 4) * s) == "1d2h3m4s")
    }

    @Test func keepsTheLargestParts() {
        let long = (86400 + 2 * 3600 + 3 * 60 + 4) * s
        #expect(DurationText.format(long, largestUnits: 2) == "1d2h")
        #expect(DurationText.format((3600 + 4) * s, largestUnits: 2) == "1h4s", "counted among the parts that are not zero")
        var parts: [String] = []
        DurationText.parts(long, largestUnits: 3) { parts.append("\($0)\($1)") }
        #expect(parts == ["1d", "2h", "3m"])
    }
}
