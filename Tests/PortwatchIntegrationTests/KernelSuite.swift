import Testing

/// Every test that runs the real daemon against the real kernel. One at a time: each loads
/// its own BPF programs, and the flood and detach tests count what the kernel holds.
@Suite(.serialized, .enabled(if: BPFAvailability.enabled, "needs root to load BPF (CI sets PORTWATCH_REQUIRE_BPF=1)"))
struct KernelSuite {}
