using System.Runtime.InteropServices;
using Hcsc.Core.Runtime;

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
    public unsafe void After_Apply_a_large_block_comes_from_the_heap_and_stays_there_when_freed()
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
        nuint heapBytes = HeapBytes();
        NativeMemory.Free(block);

        (header & 2).Should().Be(0, "the block comes from a heap, not from a mapping of its own");
        HeapBytes().Should().BeGreaterThanOrEqualTo(heapBytes, "freeing does not give the heap's memory back");
    }

    // Bytes obtained from the system for all heaps (sbrk and the thread arenas' own mappings), per glibc's mallinfo2.
    private static nuint HeapBytes() => mallinfo2().Arena;

    [DllImport("libc.so.6")]
    private static extern MallInfo mallinfo2();

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo
    {
        public nuint Arena;
        public nuint Ordblks;
        public nuint Smblks;
        public nuint Hblks;
        public nuint Hblkhd;
        public nuint Usmblks;
        public nuint Fsmblks;
        public nuint Uordblks;
        public nuint Fordblks;
        public nuint Keepcost;
    }
}
