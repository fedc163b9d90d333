using System.Runtime.InteropServices;
using Hcsc.Runtime;

namespace Hcsc.Tests.Core;

public class NativeHeapTests
{
    [Fact]
    public void The_decision_follows_the_setting_the_c_library_and_the_users_tunables()
    {
        NativeHeap.Decide(null, glibcPresent: true, glibcTunables: null).KeepsFreedMemory.Should().BeTrue();
        NativeHeap.Decide(" Auto ", glibcPresent: true, glibcTunables: "glibc.pthread.rseq=0").KeepsFreedMemory.Should().BeTrue();
        NativeHeap.Decide("off", glibcPresent: true, glibcTunables: null).Should().Be(new NativeHeapDecision(false, "HCSC_MALLOC=off"));
        NativeHeap.Decide(null, glibcPresent: false, glibcTunables: null).Reason.Should().Be("the C library is not glibc");
        NativeHeap.Decide(null, glibcPresent: true, glibcTunables: "glibc.malloc.hugetlb=1").Reason.Should().Contain("left as given");

        var act = () => NativeHeap.Decide("maybe", glibcPresent: true, glibcTunables: null);
        act.Should().Throw<ArgumentException>().WithMessage("*HCSC_MALLOC='maybe'*auto*off*");
    }

    [Fact]
    public unsafe void After_Apply_a_large_block_comes_from_the_heap()
    {
        var decision = NativeHeap.Apply();
        if (!OperatingSystem.IsLinux())
        {
            decision.KeepsFreedMemory.Should().BeFalse();
            return;
        }

        decision.KeepsFreedMemory.Should().BeTrue(decision.Reason);
        // Above glibc's largest mmap threshold (32 MiB), so without Apply it gets its own mapping; below the 64 MiB of a
        // thread's heap, so the test's thread-pool thread can hold it in its arena.
        const nuint size = 48u << 20;
        byte* block = (byte*)NativeMemory.Alloc(size);
        for (nuint offset = 0; offset < size; offset += 4096)
        {
            block[offset] = 1;
        }

        // glibc's chunk header, the size_t before the block, has bit 1 (IS_MMAPPED) set for a block mapped on its own.
        // Read per block, so that what other tests allocate at the same time does not count.
        nuint header = ((nuint*)block)[-1];
        NativeMemory.Free(block);

        // Not asserted: that freeing keeps the memory. The test runs on a thread-pool thread, whose arena may release a
        // heap that became empty whatever M_TRIM_THRESHOLD says, and other tests free memory at the same time.
        (header & 2).Should().Be(0, "the block comes from a heap, not from a mapping of its own");
    }
}
