import PortwatchCore

/// What many rows repeat, kept once as rows are read from the ledger: an owner's attribution
/// (one box for its five names) and its executable's path. Each row read makes its own copies,
/// and a String of more than 15 bytes is a heap allocation of its own (80 bytes and more): for
/// 10,000 rows held by one program, its path alone was 0.8 MB.
struct RowPool {
    private var texts = Set<String>()
    private var attributions = Set<Attribution>()

    /// Distinct values kept at most, of each kind; past that the pool starts again (values
    /// already shared stay shared).
    static let limit = 65_536

    /// `text`, as the pool already holds it when it does.
    mutating func text(_ text: String) -> String {
        // Up to 15 bytes a String holds its bytes in place: nothing to share.
        guard text.utf8.count > 15 else { return text }
        if texts.count >= Self.limit { texts.removeAll(keepingCapacity: true) }
        return texts.insert(text).memberAfterInsert
    }

    /// `attribution`, as the pool already holds it when it does.
    mutating func attribution(_ attribution: Attribution) -> Attribution {
        guard attribution != Attribution() else { return attribution }
        if attributions.count >= Self.limit { attributions.removeAll(keepingCapacity: true) }
        return attributions.insert(attribution).memberAfterInsert
    }
}
