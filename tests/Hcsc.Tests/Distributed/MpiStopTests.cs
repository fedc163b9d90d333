using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Xunit.Abstractions;

namespace Hcsc.Tests.Distributed;

/// <summary>
/// The sample's pretraining on two ranks under <c>mpirun</c>. Stops of a two-rank data-parallel run (in a process group of its own): SIGTERM to one rank, to
/// <c>mpirun</c> (which forwards it to the ranks), and to every process of the job at once (as <c>scancel</c> or a
/// cgroup kill does, each rank then getting it twice: directly and forwarded) end as one agreed stop: every rank finishes
/// step 2 of epoch 2, rank 0 writes the checkpoint, no rank hangs or aborts the others, and the run resumed with
/// <c>--resume auto</c> takes the same steps as a run never stopped.
/// </summary>
public sealed partial class MpiStopTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Lazy<string> Reference = new(() => RunToEnd(Directory.CreateTempSubdirectory("hcsc-mpi-reference-").FullName));

    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-mpi-stop-").FullName;

    public enum Target
    {
        OneRank,
        Mpirun,
        EveryProcess,
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [MpiTheory]
    [InlineData(Target.OneRank)]
    [InlineData(Target.Mpirun)]
    [InlineData(Target.EveryProcess)]
    public void A_sigterm_ends_as_one_agreed_stop_with_a_checkpoint_and_the_resume_continues_step_for_step(Target target)
    {
        string run = Path.Combine(_directory, "run");
        using (var launch = new Launch(Arguments(run), pauseAt: "epoch2-step2"))
        {
            launch.WaitForLine("paused at epoch2-step2");
            int[] pids = target switch
            {
                Target.OneRank => [launch.Ranks().Max()],
                Target.Mpirun => [launch.Id],
                _ => [launch.Id, .. launch.Ranks()],
            };
            pids.Should().NotContain(0);
            foreach (int pid in pids)
            {
                kill(pid, 15).Should().Be(0);
            }

            int exit = launch.WaitForExit();
            string text = launch.Text;
            output.WriteLine($"{target}: exit {exit}\n{text}");
            exit.Should().NotBe(0, text);
            if (target == Target.OneRank)
            {
                exit.Should().Be(143, "every rank ends with the code the signalled rank was given");
            }

            text.Should().Contain("checkpoint: ").And.Contain("(epoch 2, step 2)").And.NotContain("MPI_ABORT");
            text.Split('\n').Count(l => l.Contains("Stopped in epoch 2 after step 2", StringComparison.Ordinal)).Should().Be(2, "both ranks stop after the same step");
        }

        int resumed = RunToEndExit(run, "--resume", "auto");
        resumed.Should().Be(0);
        StepLosses(run, 2).Should().Equal(StepLosses(Reference.Value, 2), "the resumed epoch takes the uninterrupted run's steps");
    }

    [MpiFact]
    public void Cluster_on_keys_clusters_the_gathered_keys_on_two_ranks_without_an_embedding_pass()
    {
        // Every rank records the global batch's gathered keys, so each holds the whole bank and clusters its block.
        string run = Path.Combine(_directory, "keys");
        RunToEndExit(run, "--cluster-on", "Keys").Should().Be(0);
        var records = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.Clone())
            .Where(m => !m.TryGetProperty("evaluation", out _) && m.TryGetProperty("embedded_images", out _)).ToList();
        records.Should().HaveCount(2, "epochs 2 and 3 cluster");
        records.Should().OnlyContain(m => m.GetProperty("embedded_images").GetInt32() == 0 && m.GetProperty("nmi")[0].GetDouble() > 0);
    }

    private static string[] Arguments(string directory, params string[] extra) =>
    [
        Path.Combine(AppContext.BaseDirectory, "hcsc-pretrain.dll"), "pretrain", "--distributed", "mpi", "--epochs", "3", "--warmup-epoch", "1",
        "--max-images", "48", "-b", "16", "--queue-length", "64", "--num-cluster", "8,4", "--dim", "16", "--width", "8", "--image-size", "16",
        "--workers", "1", "--seed", "5", "--knn-every", "0", "--set", "Training:CheckpointEvery=1", "--set", "Model:BatchNormSplits=2",
        "--set", "Clustering:Iterations=5", "--set", "Clustering:Restarts=1", "--exp-dir", directory, .. extra,
    ];

    private static string RunToEnd(string directory)
    {
        RunToEndExit(directory).Should().Be(0);
        return directory;
    }

    private static int RunToEndExit(string directory, params string[] extra)
    {
        using var launch = new Launch(Arguments(directory, extra), pauseAt: null);
        int exit = launch.WaitForExit();
        exit.Should().Be(0, launch.Text);
        return exit;
    }

    private static double[] StepLosses(string directory, int epoch) =>
        File.ReadAllLines(Path.Combine(directory, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.Clone())
            .Single(m => !m.TryGetProperty("evaluation", out _) && m.GetProperty("epoch").GetInt32() == epoch)
            .GetProperty("step_losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int kill(int pid, int signal);

    /// <summary><c>setsid mpirun -np 2 … dotnet hcsc-pretrain.dll …</c>: mpirun leads a process group of its own.</summary>
    private sealed class Launch : IDisposable
    {
        private readonly BlockingCollection<string> _lines = [];
        private readonly ConcurrentQueue<string> _all = new();
        private readonly Process _process;

        public Launch(string[] arguments, string? pauseAt)
        {
            var start = new ProcessStartInfo("setsid") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            string[] launcher = ["mpirun", "-np", "2", "--oversubscribe", "--allow-run-as-root", .. pauseAt is null ? Array.Empty<string>() : ["-x", "HCSC_PAUSE_AT"], "dotnet"];
            foreach (string word in launcher.Concat(arguments))
            {
                start.ArgumentList.Add(word);
            }

            start.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";
            if (pauseAt is not null)
            {
                start.Environment["HCSC_PAUSE_AT"] = pauseAt;
            }

            _process = new Process { StartInfo = start };
            _process.OutputDataReceived += (_, e) => { if (e.Data is not null) { _lines.Add(e.Data); _all.Enqueue(e.Data); } };
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { _all.Enqueue(e.Data); } };
            _process.Start();
            _process.StandardInput.Close();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public int Id => _process.Id;

        public string Text => string.Join('\n', _all);

        public void WaitForLine(string text)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
            while (DateTime.UtcNow < deadline && !_process.HasExited)
            {
                if (_lines.TryTake(out var line, TimeSpan.FromSeconds(1)) && line.Contains(text, StringComparison.Ordinal))
                {
                    return;
                }
            }

            throw new TimeoutException($"mpirun never printed '{text}':\n{Text}");
        }

        // The ranks: mpirun's children (/proc/<pid>/stat: "pid (comm) state ppid ...").
        public List<int> Ranks() =>
            Directory.EnumerateDirectories("/proc")
                .Select(d => int.TryParse(Path.GetFileName(d), NumberStyles.Integer, CultureInfo.InvariantCulture, out int pid) ? pid : 0)
                .Where(pid => pid > 0 && ParentOf(pid) == Id)
                .ToList();

        public int WaitForExit()
        {
            if (!_process.WaitForExit(TimeSpan.FromMinutes(3)))
            {
                _process.Kill(entireProcessTree: true);
                throw new TimeoutException($"mpirun did not finish in 3 minutes (a rank waiting in a collective?):\n{Text}");
            }

            _process.WaitForExit();
            return _process.ExitCode;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.Dispose();
        }

        private static int ParentOf(int pid)
        {
            try
            {
                string stat = File.ReadAllText($"/proc/{pid}/stat");
                string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                return int.Parse(fields[1], CultureInfo.InvariantCulture);
            }
            catch (IOException)
            {
                return 0;
            }
        }
    }
}

/// <summary>A theory that needs <c>mpirun</c> (see <see cref="MpiFactAttribute"/>).</summary>
public sealed class MpiTheoryAttribute : TheoryAttribute
{
    public MpiTheoryAttribute()
    {
        if (MpiFactAttribute.FindMpirun() is null && Environment.GetEnvironmentVariable(MpiFactAttribute.RequireVariable) != "1")
        {
            Skip = $"mpirun is not on PATH: {MpiFactAttribute.InstallHint}, or set {MpiFactAttribute.RequireVariable}=1 to make this a failure.";
        }
    }
}
