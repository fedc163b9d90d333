using TorchSharp;

namespace Hcsc.Tests.Build;

public class NativeFixTests
{
    private const string Version = "GLIBCXX_3.4.32";

    private static string PackageCacheCopy()
    {
        string home = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(home, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    private static string OutputCopy() => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    [Fact]
    public void TorchSharp_loads_and_matmul_matches_a_managed_computation()
    {
        // Loading TorchSharp at all is the point on Debian 12: without the fix this throws.
        var a = new double[,] { { 1, 2, 3 }, { 4, 5, 6 } };
        var b = new double[,] { { 7, 8 }, { 9, 10 }, { 11, 12 } };
        using var ta = torch.tensor(new double[] { 1, 2, 3, 4, 5, 6 }).reshape(2, 3);
        using var tb = torch.tensor(new double[] { 7, 8, 9, 10, 11, 12 }).reshape(3, 2);
        using var product = ta.matmul(tb);
        for (int i = 0; i < 2; i++)
        {
            for (int j = 0; j < 2; j++)
            {
                double expected = 0;
                for (int k = 0; k < 3; k++)
                {
                    expected += a[i, k] * b[k, j];
                }

                product[i, j].item<double>().Should().Be(expected);
            }
        }
    }

    [Fact]
    public void Version_needs_are_read_like_readelf_reports_them()
    {
        // readelf -V of TorchSharp 0.107.0's libLibTorchSharp.so lists these needs on libstdc++, all with "Flags: none".
        string cache = PackageCacheCopy();
        File.Exists(cache).Should().BeTrue($"the TorchSharp package is restored at {cache}");
        var needs = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(cache), cache);
        needs.Should().ContainKeys(Version, "GLIBCXX_3.4.26", "GLIBCXX_3.4.19", "CXXABI_1.3.1", "GLIBCXX_3.4.18");
        needs[Version].Should().Be(0, "the package ships the need strong; the fix never edits the NuGet cache");
    }

    [Fact]
    public void Marking_weak_sets_only_the_weak_bit_and_is_idempotent()
    {
        string copy = Path.Combine(Path.GetTempPath(), $"hcsc-elf-{Guid.NewGuid():N}.so");
        File.Copy(PackageCacheCopy(), copy);
        try
        {
            var before = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(copy), copy);
            byte[] original = File.ReadAllBytes(copy);
            var stamp = File.GetLastWriteTimeUtc(copy);

            ElfVersionNeedPatcher.MarkWeak(copy, Version).Should().Be(VersionNeedPatchOutcome.Patched);
            ElfVersionNeedPatcher.MarkWeak(copy, Version).Should().Be(VersionNeedPatchOutcome.AlreadyWeak);
            ElfVersionNeedPatcher.MarkWeak(copy, "GLIBCXX_9.9.99").Should().Be(VersionNeedPatchOutcome.NotNeeded);

            var after = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(copy), copy);
            after[Version].Should().Be(0x2);
            after.Where(kv => kv.Key != Version).Should().BeEquivalentTo(before.Where(kv => kv.Key != Version));
            byte[] patched = File.ReadAllBytes(copy);
            Enumerable.Range(0, original.Length).Count(i => original[i] != patched[i]).Should().Be(1, "exactly one byte (vna_flags) changes");
            File.GetLastWriteTimeUtc(copy).Should().Be(stamp, "incremental copies must keep seeing the file as up to date");
        }
        finally
        {
            File.Delete(copy);
        }
    }

    [Fact]
    public void The_build_output_copy_is_weak_when_the_host_libstdcxx_lacks_the_version()
    {
        string? host = ElfVersionNeedPatcher.FindHostLibStdCxx();
        bool hostHasIt = host is not null && ElfVersionNeedPatcher.DefinesVersionString(host, Version);
        var needs = ElfVersionNeedPatcher.ReadVersionNeeds(File.ReadAllBytes(OutputCopy()), OutputCopy());
        needs[Version].Should().Be(hostHasIt ? (ushort)0 : (ushort)2);
    }

    [Fact]
    public void A_file_that_is_not_ELF_gets_a_clear_error()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hcsc-not-elf-{Guid.NewGuid():N}.so");
        File.WriteAllText(path, "this is a text file, not a shared library, but long enough to have a header of sixty-four bytes");
        try
        {
            var act = () => ElfVersionNeedPatcher.MarkWeak(path, Version);
            act.Should().Throw<InvalidDataException>().WithMessage("*is not an ELF file (bad magic)*libLibTorchSharp.so*");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
