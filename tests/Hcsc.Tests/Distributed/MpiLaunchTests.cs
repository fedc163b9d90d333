using Hcsc.Tests.Build;
using Xunit.Abstractions;

namespace Hcsc.Tests.Distributed;

/// <summary>
/// Runs the MPI check program (tests/Hcsc.MpiTests, built with this project) on two ranks:
/// <c>mpirun -np 2 --oversubscribe --allow-run-as-root dotnet Hcsc.MpiTests.dll</c>. Without <c>mpirun</c> the test is
/// skipped, unless <c>HCSC_REQUIRE_MPI=1</c> (CI), when it fails saying what to install.
/// </summary>
public class MpiLaunchTests(ITestOutputHelper output)
{
    [MpiFact]
    public void Two_ranks_pass_every_check_of_the_MPI_test_program()
    {
        string program = TestProgramPath();
        File.Exists(program).Should().BeTrue($"{program} is built with the tests (tests/Hcsc.MpiTests; dotnet build tests/Hcsc.MpiTests)");

        var (exit, text) = MpiRun.Launch(output, program, []);
        exit.Should().Be(0, $"every check passes on both ranks:\n{text}");
        text.Should().Contain("MPI tests passed: ").And.Contain("checks on each of 2 ranks")
            .And.Contain("ok  GradientAllReduce (1 bucket) = the whole batch's gradient")
            .And.Contain("ok  AllGatherVariable (uneven, one empty)")
            .And.Contain("ok  distributed hierarchical k-means = one process, level 0 (k = 40)")
            .And.Contain("ok  distributed k-means++ without a subsample = one process")
            .And.Contain("ok  data-parallel pretrain: ").And.Contain("ok  shuffle BN over 2 ranks: keys = one process's with 2 BN splits")
            .And.Contain("allreduce of 11,689,512 float32")
            .And.NotContain("FAIL");
    }

    /// <summary>tests/Hcsc.MpiTests/bin/&lt;configuration&gt;/&lt;framework&gt;/Hcsc.MpiTests.dll, the configuration and framework of this run.</summary>
    private static string TestProgramPath()
    {
        var framework = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string configuration = framework.Parent!.Name;
        return Path.Combine(ScalarTemporaryGuardTests.RepoRoot(), "tests", "Hcsc.MpiTests", "bin", configuration, framework.Name, "Hcsc.MpiTests.dll");
    }
}

/// <summary>
/// A fact that needs <c>mpirun</c>: skipped when it is not on PATH, unless the environment variable
/// <see cref="RequireVariable"/> is 1, in which case the test runs and fails with <see cref="InstallHint"/>.
/// </summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public const string RequireVariable = "HCSC_REQUIRE_MPI";

    public const string InstallHint = "install openmpi-bin (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)";

    public MpiFactAttribute()
    {
        if (FindMpirun() is null && Environment.GetEnvironmentVariable(RequireVariable) != "1")
        {
            Skip = $"mpirun is not on PATH: {InstallHint}, or set {RequireVariable}=1 to make this a failure.";
        }
    }

    /// <summary>The path of <c>mpirun</c> on PATH, or null.</summary>
    public static string? FindMpirun() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "mpirun"))
            .FirstOrDefault(File.Exists);
}
