using System.Diagnostics;
using System.Globalization;
using System.Text;
using Xunit.Abstractions;

namespace Hcsc.Tests.Distributed;

/// <summary>
/// Starts <c>mpirun -np N --oversubscribe --allow-run-as-root dotnet PROGRAM ARGS…</c>, collects stdout and stderr
/// together, and fails the test when it runs past five minutes or mpirun is missing (the test is skipped before that
/// unless <c>HCSC_REQUIRE_MPI=1</c>: see <see cref="MpiFactAttribute"/>).
/// </summary>
internal static class MpiRun
{
    /// <summary>Runs <paramref name="program"/> (a .dll) on <paramref name="ranks"/> ranks; returns the exit status and the console text.</summary>
    public static (int Exit, string Text) Launch(ITestOutputHelper output, string program, IEnumerable<string> arguments, int ranks = 2)
    {
        string? mpirun = MpiFactAttribute.FindMpirun();
        Assert.True(mpirun is not null, $"mpirun is not on PATH and {MpiFactAttribute.RequireVariable}=1: {MpiFactAttribute.InstallHint}");
        var start = new ProcessStartInfo(mpirun!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string argument in (string[])["-np", ranks.ToString(CultureInfo.InvariantCulture), "--oversubscribe", "--allow-run-as-root", "dotnet", program, .. arguments])
        {
            start.ArgumentList.Add(argument);
        }

        // Containers often forbid the cross-memory attach of Open MPI's shared-memory transport (ptrace rules): copy instead.
        start.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";

        var console = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (console) { console.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (console) { console.AppendLine(e.Data); } } };
        var clock = Stopwatch.StartNew();
        process.Start();
        process.StandardInput.Close();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail($"mpirun did not finish within 5 minutes:\n{console}");
        }

        process.WaitForExit(); // the end of the redirected output
        string text = console.ToString();
        output.WriteLine($"mpirun -np {ranks} {Path.GetFileName(program)} ({clock.Elapsed.TotalSeconds:F1} s), exit {process.ExitCode}:");
        output.WriteLine(text);
        return (process.ExitCode, text);
    }
}
