using Hcsc.Runtime;

namespace Hcsc.Tests.Core;

public class OneDnnGuardTests
{
    // CPUID of a 2-core AMD EPYC (Zen 4) VM that describes its caches: leaf 0, leaf 0xB, leaf 0x8000001D.
    private static readonly Dictionary<(uint, uint), CpuIdResult> Zen4 = new()
    {
        [(0, 0)] = new(0x1c, 0x68747541, 0x444d4163, 0x69746e65),
        [(0xB, 0)] = new(0x0, 0x1, 0x100, 0x0),
        [(0xB, 1)] = new(0x5, 0x2, 0x201, 0x0),
        [(0x8000001D, 0)] = new(0x121, 0x1c0003f, 0x3f, 0x0),
        [(0x8000001D, 1)] = new(0x122, 0x1c0003f, 0x3f, 0x0),
        [(0x8000001D, 2)] = new(0x143, 0x1c0003f, 0x7ff, 0x2),
        [(0x8000001D, 3)] = new(0x4163, 0x3c0003f, 0x7fff, 0x1),
    };

    private static Func<uint, uint, CpuIdResult> Source(Dictionary<(uint, uint), CpuIdResult> table) =>
        (leaf, subleaf) => table.TryGetValue((leaf, subleaf), out var r) ? r : default;

    [Fact]
    public void Amd_caches_are_read_per_core_as_onednn_reads_them()
    {
        // L1d: 8 ways x 64 B lines x 64 sets = 32 KiB; L2: 8 x 64 x 2048 = 1 MiB; L3: 16 x 64 x 32768 = 32 MiB shared by 2 cores.
        var report = CpuCacheReport.FromCpuId(Source(Zen4));
        report.Vendor.Should().Be("AuthenticAMD");
        report.PerCoreBytes.Should().Equal(32 * 1024, 1024 * 1024, 16 * 1024 * 1024);
        report.Problem.Should().BeNull();
        OneDnnGuard.Decide(null, report).ConvolutionsUseOneDnn.Should().BeTrue();
    }

    [Fact]
    public void An_amd_cpu_that_describes_no_caches_turns_onednn_convolutions_off()
    {
        var table = new Dictionary<(uint, uint), CpuIdResult>(Zen4);
        foreach (uint subleaf in new uint[] { 0, 1, 2, 3 })
        {
            table[(0x8000001D, subleaf)] = default;   // the failing VM: no cache described
        }

        var report = CpuCacheReport.FromCpuId(Source(table));
        report.PerCoreBytes.Should().Equal([1L, 1L, 1L], "oneDNN 3.7's xbyak takes an empty description as 1-byte caches");
        report.Problem.Should().Contain("L1 1 B").And.Contain("no caches");
        var decision = OneDnnGuard.Decide("auto", report);
        decision.ConvolutionsUseOneDnn.Should().BeFalse();
        decision.Reason.Should().Contain(OneDnnGuard.EnvironmentVariable + "=on");
        OneDnnGuard.Decide("on", report).ConvolutionsUseOneDnn.Should().BeTrue("the user can insist");
        TorchRuntime.ConvolutionProblem(report, prepared: false).Should().Contain("no caches").And.Contain("Call Hcsc.Runtime.TorchRuntime.Prepare() once at startup");
        TorchRuntime.ConvolutionProblem(report, prepared: true).Should().BeNull("a prepared process has decided");
        TorchRuntime.ConvolutionProblem(CpuCacheReport.FromCpuId(Source(Zen4)), prepared: false).Should().BeNull("caches reported: nothing to prepare for");
    }

    [Fact]
    public void An_amd_cpu_without_topology_leaf_has_no_smt_width_and_is_not_trusted()
    {
        var table = new Dictionary<(uint, uint), CpuIdResult>(Zen4) { [(0, 0)] = new(0x0A, 0x68747541, 0x444d4163, 0x69746e65) };
        CpuCacheReport.FromCpuId(Source(table)).Problem.Should().NotBeNull();
    }

    [Fact]
    public void An_intel_cpu_that_enumerates_no_caches_gets_onednn_guesses_and_keeps_onednn()
    {
        var table = new Dictionary<(uint, uint), CpuIdResult>
        {
            [(0, 0)] = new(0x16, 0x756e6547, 0x6c65746e, 0x49656e69), // GenuineIntel
            [(0xB, 0)] = new(0x1, 0x2, 0x100, 0x0),
            [(0xB, 1)] = new(0x4, 0x8, 0x201, 0x0),
        };
        var report = CpuCacheReport.FromCpuId(Source(table));
        report.Vendor.Should().Be("GenuineIntel");
        report.UsesOneDnnGuesses.Should().BeTrue();
        report.Problem.Should().BeNull();

        // Leaf 4: L1d (type 1) 48 KiB shared by 2 threads, L1i (type 2, skipped), L2 (type 3) 1.25 MiB shared by 2 threads.
        table[(4, 0)] = new(0x4121, 0x02c0003f, 0x3f, 0x0);
        table[(4, 1)] = new(0x4122, 0x01c0003f, 0x3f, 0x0);
        table[(4, 2)] = new(0x4143, 0x04c0003f, 0x3ff, 0x0);
        report = CpuCacheReport.FromCpuId(Source(table));
        report.PerCoreBytes.Should().Equal(48 * 1024, 1280 * 1024);
        report.Problem.Should().BeNull();
    }

    [Fact]
    public void Explicit_settings_win_and_unknown_ones_are_refused()
    {
        var report = CpuCacheReport.FromCpuId(Source(Zen4));
        OneDnnGuard.Decide(" OFF ", report).ConvolutionsUseOneDnn.Should().BeFalse();
        var act = () => OneDnnGuard.Decide("maybe", report);
        act.Should().Throw<ArgumentException>().WithMessage("*HCSC_ONEDNN='maybe'*auto*on*off*");
    }

    [Fact]
    public void Libtorchs_switch_is_reachable_and_round_trips()
    {
        OneDnnGuard.Apply();
        bool original = OneDnnGuard.ConvolutionsUseOneDnn;
        try
        {
            OneDnnGuard.SetConvolutionsUseOneDnn(!original);
            OneDnnGuard.ConvolutionsUseOneDnn.Should().Be(!original);
        }
        finally
        {
            OneDnnGuard.SetConvolutionsUseOneDnn(original);
        }

        OneDnnGuard.ConvolutionsUseOneDnn.Should().Be(OneDnnGuard.Applied!.ConvolutionsUseOneDnn);
    }
}
