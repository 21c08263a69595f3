extension StringProtocol {
    /// Without the blanks (spaces, tabs and other horizontal white space) at either end.
    public var trimmingBlanks: String { trimming { $0.isWhitespace && !$0.isNewline } }

    /// Without the line breaks at either end.
    public var trimmingNewlines: String { trimming(\.isNewline) }

    private func trimming(_ drop: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !drop($0) }), let last = lastIndex(where: { !drop($0) }) else { return "" }
        return String(self[first...last])
    }
}
