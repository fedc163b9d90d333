using System.Runtime.Intrinsics.X86;

namespace Hcsc.Runtime;

/// <summary>One CPUID query's answer: the four registers after <c>cpuid</c> with EAX = leaf, ECX = subleaf.</summary>
/// <param name="Eax">EAX.</param>
/// <param name="Ebx">EBX.</param>
/// <param name="Ecx">ECX.</param>
/// <param name="Edx">EDX.</param>
public readonly record struct CpuIdResult(uint Eax, uint Ebx, uint Ecx, uint Edx);

/// <summary>
/// The per-core data-cache sizes that oneDNN 3.7 (inside libtorch 2.10, inside TorchSharp 0.107) derives from
/// CPUID, computed the way its bundled xbyak does, so a program can tell in advance whether oneDNN will see
/// sizes it cannot work with.
/// </summary>
/// <remarks>
/// <para>
/// On AMD processors that xbyak version reads leaf <c>0x8000001D</c> subleaves 0, 2 and 3 as L1, L2 and L3
/// without checking that a cache is described there. A virtual machine whose CPUID describes no caches
/// (<c>lscpu</c> lists none, <c>/sys/devices/system/cpu/cpu0/cache</c> is absent) answers zeros, and every
/// level becomes <b>1 byte</b>. oneDNN then (a) divides by zero while choosing the blocking of a strided 1×1
/// backward-data convolution (SIGFPE, ResNet-50's downsampling layers) and (b) computes wrong input gradients
/// for convolutions with fewer than 16 channels, finite with one thread and NaN with several. On Intel
/// processors leaf 4 is walked until its terminator; no levels at all makes oneDNN fall back to built-in
/// guesses (32 KiB / 512 KiB / 1 MiB), which is safe.
/// </para>
/// <para>Per core: size / cores sharing, as oneDNN's <c>get_per_core_cache_size</c>.</para>
/// </remarks>
public sealed record CpuCacheReport
{
    /// <summary>oneDNN's own per-core guesses when the CPU enumerates no cache levels (bytes): L1, L2, L3.</summary>
    public static readonly IReadOnlyList<long> OneDnnGuesses = [32 * 1024, 512 * 1024, 1024 * 1024];

    /// <summary>Smallest per-core L1 data cache (bytes) that counts as usable: below it oneDNN's blocking degenerates.</summary>
    public const long MinimumL1Bytes = 16 * 1024;

    /// <summary>Smallest per-core L2 cache (bytes) that counts as usable.</summary>
    public const long MinimumL2Bytes = 128 * 1024;

    /// <summary>The CPU vendor string from leaf 0 (<c>AuthenticAMD</c>, <c>GenuineIntel</c>, …); empty when not x86.</summary>
    public required string Vendor { get; init; }

    /// <summary>Per-core data-cache sizes in bytes as oneDNN will see them, L1 first (at most three levels).</summary>
    public required IReadOnlyList<long> PerCoreBytes { get; init; }

    /// <summary>True when oneDNN uses its guesses because the CPU enumerated no levels (Intel's leaf 4 path).</summary>
    public bool UsesOneDnnGuesses { get; init; }

    /// <summary>
    /// Null when oneDNN's convolutions can be trusted on this CPU; otherwise why not, in words a user can act on.
    /// </summary>
    public string? Problem
    {
        get
        {
            if (Vendor.Length == 0 || UsesOneDnnGuesses)
            {
                return null;
            }

            long l1 = PerCoreBytes.Count > 0 ? PerCoreBytes[0] : 0;
            long l2 = PerCoreBytes.Count > 1 ? PerCoreBytes[1] : 0;
            if (l1 >= MinimumL1Bytes && l2 >= MinimumL2Bytes)
            {
                return null;
            }

            return $"this {Vendor} CPU reports per-core caches of L1 {Describe(l1)} and L2 {Describe(l2)} through CPUID " +
                   "(a virtual machine that describes no caches), and oneDNN 3.7 divides by zero or computes wrong convolution gradients with such sizes";
        }
    }

    /// <summary>Reads this machine's CPUID. On processors other than x86 the report has no vendor and no problem.</summary>
    public static CpuCacheReport ForThisMachine() =>
        X86Base.IsSupported ? FromCpuId(QueryHardware) : new CpuCacheReport { Vendor = string.Empty, PerCoreBytes = [] };

    /// <summary>
    /// Derives the report from a CPUID source (<paramref name="cpuid"/>(leaf, subleaf)); tests pass recorded answers.
    /// </summary>
    public static CpuCacheReport FromCpuId(Func<uint, uint, CpuIdResult> cpuid)
    {
        ArgumentNullException.ThrowIfNull(cpuid);
        var leaf0 = cpuid(0, 0);
        string vendor = VendorString(leaf0);
        var (smt, logical) = ThreadsPerCore(cpuid, leaf0.Eax);
        return vendor switch
        {
            "AuthenticAMD" or "HygonGenuine" => AmdLevels(cpuid, vendor, smt, logical),
            "GenuineIntel" => IntelLevels(cpuid, vendor, smt, logical),
            _ => new CpuCacheReport { Vendor = vendor, PerCoreBytes = OneDnnGuesses, UsesOneDnnGuesses = true },
        };
    }

    // xbyak: subleaves 0, 2, 3 of 0x8000001D are taken as L1d, L2, L3 whatever their cache type field says.
    private static CpuCacheReport AmdLevels(Func<uint, uint, CpuIdResult> cpuid, string vendor, uint smt, uint logical)
    {
        var sizes = new List<long>(3);
        foreach (uint subleaf in new uint[] { 0, 2, 3 })
        {
            sizes.Add(PerCore(cpuid(0x8000001D, subleaf), smt, logical));
        }

        return new CpuCacheReport { Vendor = vendor, PerCoreBytes = sizes };
    }

    // xbyak: leaf 4 walked until cache type 0; data (1) and unified (3) caches are levels.
    private static CpuCacheReport IntelLevels(Func<uint, uint, CpuIdResult> cpuid, string vendor, uint smt, uint logical)
    {
        var sizes = new List<long>(3);
        for (uint subleaf = 0; sizes.Count < 3 && subleaf < 16; subleaf++)
        {
            var r = cpuid(4, subleaf);
            uint type = r.Eax & 0x1F;
            if (type == 0)
            {
                break;
            }

            if (type is 1 or 3)
            {
                sizes.Add(PerCore(r, smt, logical));
            }
        }

        return sizes.Count == 0
            ? new CpuCacheReport { Vendor = vendor, PerCoreBytes = OneDnnGuesses, UsesOneDnnGuesses = true }
            : new CpuCacheReport { Vendor = vendor, PerCoreBytes = sizes };
    }

    // size = ways · partitions · line · sets; cores sharing = max(min(sharing, logical) / smt, 1).
    private static long PerCore(CpuIdResult r, uint smt, uint logical)
    {
        long size = (long)(((r.Ebx >> 22) & 0x1FF) + 1) * (((r.Ebx >> 12) & 0x1FF) + 1) * ((r.Ebx & 0x7FF) + 1) * ((long)r.Ecx + 1);
        size &= uint.MaxValue; // xbyak multiplies in 32 bits
        if (smt == 0)
        {
            return 0; // xbyak divides by the SMT width: oneDNN itself would fail
        }

        uint sharing = ((r.Eax >> 14) & 0x7FF) + 1;
        if (logical != 0)
        {
            sharing = Math.Min(sharing, logical);
        }

        return size / Math.Max(sharing / smt, 1);
    }

    // Leaf 0xB: level type 1 (SMT) gives the threads per core, type 2 (core) the logical processors per package.
    private static (uint Smt, uint Logical) ThreadsPerCore(Func<uint, uint, CpuIdResult> cpuid, uint maxLeaf)
    {
        if (maxLeaf < 0xB)
        {
            return (0, 0);
        }

        uint smt = 0, logical = 0;
        for (uint subleaf = 0; subleaf < 2; subleaf++)
        {
            var r = cpuid(0xB, subleaf);
            uint level = (r.Ecx >> 8) & 0xFF;
            uint count = r.Ebx & 0x7FFF;
            if (level == 1)
            {
                smt = count;
            }
            else if (level == 2)
            {
                logical = count;
            }
        }

        smt = Math.Max(smt, 1);
        return (smt, Math.Max(logical, smt));
    }

    private static string VendorString(CpuIdResult leaf0)
    {
        Span<byte> bytes = stackalloc byte[12];
        BitConverter.TryWriteBytes(bytes[..4], leaf0.Ebx);
        BitConverter.TryWriteBytes(bytes[4..8], leaf0.Edx);
        BitConverter.TryWriteBytes(bytes[8..], leaf0.Ecx);
        return System.Text.Encoding.ASCII.GetString(bytes);
    }

    private static CpuIdResult QueryHardware(uint leaf, uint subleaf)
    {
        var (eax, ebx, ecx, edx) = X86Base.CpuId(unchecked((int)leaf), unchecked((int)subleaf));
        return new CpuIdResult(unchecked((uint)eax), unchecked((uint)ebx), unchecked((uint)ecx), unchecked((uint)edx));
    }

    private static string Describe(long bytes) => bytes >= 1024 ? $"{bytes / 1024} KiB" : $"{bytes} B";
}
