using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Tests.Sample;

/// <summary>
/// The sample run as a child process, killed (SIGKILL) or stopped (SIGTERM) at named points (HCSC_PAUSE_AT), then
/// resumed with --resume auto: nothing is lost, and the resumed steps equal those of a run never interrupted. Also what
/// only a separate process shows: its standard error (libtorch's own log lines).
/// </summary>
public sealed partial class ProcessFaultTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-fault-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static string[] Arguments(string directory, params string[] extra) =>
    [
        Path.Combine(AppContext.BaseDirectory, "hcsc-pretrain.dll"), "pretrain", "--epochs", "3", "--warmup-epoch", "1", "--max-images", "48",
        "-b", "16", "--queue-length", "64", "--num-cluster", "8,4", "--dim", "16", "--width", "8", "--image-size", "16", "--workers", "1",
        "--seed", "5", "--set", "Training:CheckpointEvery=1", "--set", "Model:BatchNormSplits=2", "--set", "Clustering:Iterations=5", "--set", "Clustering:Restarts=1",
        "--exp-dir", directory, .. extra,
    ];

    private sealed class Child : IDisposable
    {
        private readonly BlockingCollection<string> _lines = [];
        private readonly Process _process;

        public Child(string[] arguments, string? pauseAt, string? failAt = null, string? nanAt = null, string[]? launcher = null, IReadOnlyDictionary<string, string>? environment = null)
        {
            // launcher: the command that starts `dotnet` (e.g. setsid, for a process group of its own); its first word runs.
            var start = new ProcessStartInfo(launcher?[0] ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string word in launcher?.Skip(1) ?? [])
            {
                start.ArgumentList.Add(word);
            }

            if (launcher is null && SigIntIgnoredHere())
            {
                // A child inherits an ignored SIGINT (a test run started in the background of a script), and .NET keeps
                // it ignored; GNU env resets it, so the stop-signal test sends a signal that can arrive.
                start.FileName = "env";
                start.ArgumentList.Add("--default-signal=INT");
                start.ArgumentList.Add("dotnet");
            }

            foreach (string argument in arguments)
            {
                start.ArgumentList.Add(argument);
            }

            if (pauseAt is not null)
            {
                start.Environment[FaultInjection.EnvironmentVariable] = pauseAt;
            }

            if (failAt is not null)
            {
                start.Environment[FaultInjection.FailEnvironmentVariable] = failAt;
            }

            if (nanAt is not null)
            {
                start.Environment[FaultInjection.NanEnvironmentVariable] = nanAt;
            }

            foreach (var (name, value) in environment ?? new Dictionary<string, string>())
            {
                start.Environment[name] = value;
            }

            _process = new Process { StartInfo = start };
            _process.OutputDataReceived += (_, e) => { if (e.Data is not null) { _lines.Add(e.Data); Output.Add(e.Data); } };
            _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { Output.Add(e.Data); } };
            _process.Start();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public ConcurrentQueue<string> OutputLines { get; } = new();

        public ConcurrentBag<string> Output { get; } = [];

        public int Id => _process.Id;

        public void WaitForLine(string text)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
            while (DateTime.UtcNow < deadline)
            {
                if (_lines.TryTake(out var line, TimeSpan.FromSeconds(1)) && line.Contains(text, StringComparison.Ordinal))
                {
                    return;
                }

                if (_process.HasExited && _lines.Count == 0)
                {
                    break;
                }
            }

            throw new TimeoutException($"The child never printed '{text}'. Output:\n{string.Join('\n', Output)}");
        }

        public int WaitForExit()
        {
            if (!_process.WaitForExit(TimeSpan.FromMinutes(3)))
            {
                _process.Kill(entireProcessTree: true);
                throw new TimeoutException($"The child did not finish in 3 minutes. Output:\n{string.Join('\n', Output)}");
            }

            _process.WaitForExit();
            return _process.ExitCode;
        }

        public void Kill()
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        public void Dispose() => _process.Dispose();

        // Bit 1 of SigIgn in /proc/self/status (a hexadecimal mask whose bit n-1 is signal n) is SIGINT.
        private static bool SigIntIgnoredHere()
        {
            const string path = "/proc/self/status";
            string? mask = File.Exists(path)
                ? File.ReadLines(path).FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal))?["SigIgn:".Length..].Trim()
                : null;
            return mask is not null && (Convert.ToUInt64(mask, 16) & (1UL << 1)) != 0;
        }
    }

    private static List<JsonElement> Metrics(string directory) =>
        File.ReadAllLines(Path.Combine(directory, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    private static double[] StepLosses(string directory, int epoch) =>
        Metrics(directory).Single(m => !m.TryGetProperty("evaluation", out _) && m.GetProperty("epoch").GetInt32() == epoch)
            .GetProperty("step_losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();

    private string Uninterrupted()
    {
        string directory = Path.Combine(_directory, "uninterrupted");
        using var child = new Child(Arguments(directory), pauseAt: null);
        child.WaitForExit().Should().Be(0, string.Join('\n', child.Output));
        return directory;
    }

    private void ResumeAndCompare(string directory, string expectedResumeLine, IReadOnlyDictionary<string, string>? environment = null)
    {
        using var resumed = new Child(Arguments(directory, "--resume", "auto"), pauseAt: null, environment: environment);
        resumed.WaitForExit().Should().Be(0, string.Join('\n', resumed.Output));
        resumed.Output.Should().Contain(l => l.Contains(expectedResumeLine, StringComparison.Ordinal));
        string reference = Uninterrupted();
        foreach (int epoch in new[] { 1, 2 })
        {
            StepLosses(directory, epoch).Should().Equal(StepLosses(reference, epoch), $"epoch index {epoch} after the resume");
        }
    }

    [Theory]
    [InlineData("epoch2-step2", "1 epochs done; continuing at epoch 2")]
    [InlineData("epoch2-clustering", "1 epochs done; continuing at epoch 2")]
    public void A_run_killed_with_sigkill_resumes_from_its_last_complete_checkpoint(string point, string resumeLine)
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory), point))
        {
            child.WaitForLine($"paused at {point}");
            child.Kill();
        }

        Directory.GetFiles(directory, "checkpoint_*.hcsc").Select(Path.GetFileName).Order().Should().Equal("checkpoint_0001.hcsc", "checkpoint_latest.hcsc");
        ResumeAndCompare(directory, resumeLine);
    }

    [Fact]
    public void A_run_killed_while_writing_a_checkpoint_keeps_the_previous_one_and_resumes_from_it()
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory), "epoch2-checkpoint-write"))
        {
            child.WaitForLine("paused at epoch2-checkpoint-write");
            child.Kill();
        }

        // The new checkpoint was complete in its temporary file but never renamed: the old one is untouched.
        Directory.GetFiles(directory, ".checkpoint_latest.hcsc.*.tmp").Should().ContainSingle("the interrupted write is left behind");
        Directory.GetFiles(directory, "checkpoint_*.hcsc").Select(Path.GetFileName).Order().Should().Equal("checkpoint_0001.hcsc", "checkpoint_latest.hcsc");
        TrainingCheckpointEpoch(Path.Combine(directory, "checkpoint_latest.hcsc")).Should().Be(1);

        ResumeAndCompare(directory, "1 epochs done; continuing at epoch 2");
        Directory.GetFiles(directory, "*.tmp").Should().BeEmpty("the resume removed the unfinished write");
    }

    [Fact]
    public void A_full_disk_at_a_checkpoint_write_stops_with_a_clear_error_and_loses_nothing()
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory), pauseAt: null, failAt: "epoch2-checkpoint-write"))
        {
            child.WaitForExit().Should().Be(1, string.Join('\n', child.Output));
            child.Output.Should().Contain(l => l.Contains("checkpoint_latest.hcsc could not be written (No space left on device", StringComparison.Ordinal)
                && l.Contains("The previous checkpoint there is unchanged", StringComparison.Ordinal)
                && l.Contains("--resume auto", StringComparison.Ordinal));
        }

        Directory.GetFiles(directory, "*.tmp").Should().BeEmpty("the failed write removed its temporary file");
        TrainingCheckpointEpoch(Path.Combine(directory, "checkpoint_latest.hcsc")).Should().Be(1);
        ResumeAndCompare(directory, "1 epochs done; continuing at epoch 2");
    }

    [Fact]
    public void A_read_only_output_folder_is_reported_before_any_work_with_the_other_invalid_settings()
    {
        // sysfs refuses new files and folders even to root, so this is a real read-only destination.
        string readOnly = "/sys/kernel/hcsc-run";
        var arguments = Arguments(readOnly, "--resume", Path.Combine(_directory, "missing.hcsc"));
        arguments[Array.IndexOf(arguments, "--width") + 1] = "0";
        using var child = new Child(arguments, pauseAt: null);
        child.WaitForExit().Should().Be(2, string.Join('\n', child.Output));
        child.Output.Should().Contain(l => l.Contains($"--exp-dir '{readOnly}' cannot be written", StringComparison.Ordinal))
            .And.Contain(l => l.Contains("--width must be at least 1; got 0.", StringComparison.Ordinal))
            .And.Contain(l => l.Contains("missing.hcsc' does not exist", StringComparison.Ordinal))
            .And.NotContain(l => l.StartsWith("Data:", StringComparison.Ordinal), "nothing is read before the settings are valid");
    }

    [Fact]
    public void A_nan_gradient_stops_the_run_and_leaves_the_last_checkpoint_untouched()
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory), pauseAt: null, nanAt: "epoch2-step2"))
        {
            child.WaitForExit().Should().Be(1, string.Join('\n', child.Output));
            child.Output.Should().Contain(l => l.Contains("became non-finite in epoch 2, step 2", StringComparison.Ordinal)
                && l.Contains("the weights were not updated", StringComparison.Ordinal));
        }

        TrainingCheckpointEpoch(Path.Combine(directory, "checkpoint_latest.hcsc")).Should().Be(1);
        ResumeAndCompare(directory, "1 epochs done; continuing at epoch 2");
    }

    [Fact]
    public void With_divergence_retries_a_nan_gradient_resumes_from_the_last_checkpoint_with_half_the_learning_rate()
    {
        string directory = Path.Combine(_directory, "run");
        using var child = new Child(Arguments(directory, "--divergence-retries", "1"), pauseAt: null, nanAt: "epoch2-step2");
        child.WaitForExit().Should().Be(0, string.Join('\n', child.Output));
        var lines = child.Output.ToList();
        lines.Should().Contain(l => l.Contains("became non-finite in epoch 2, step 2", StringComparison.Ordinal))
            .And.Contain(l => l.StartsWith("retry 1/1: resuming from the last good checkpoint with learning rate", StringComparison.Ordinal))
            .And.Contain(l => l.Contains("1 epochs done; continuing at epoch 2", StringComparison.Ordinal));
        var lrs = Metrics(directory).Where(m => !m.TryGetProperty("evaluation", out _)).Select(m => (Epoch: m.GetProperty("epoch").GetInt32(), Lr: m.GetProperty("lr").GetDouble())).ToList();
        lrs.Select(e => e.Epoch).Should().Equal(0, 1, 2);
        // Cosine schedule (the default): epoch 0 ran at the full rate, epochs 1 and 2 at half of it.
        lrs[1].Lr.Should().BeApproximately(LearningRateSchedule.At(1, 3, lrs[0].Lr / 2, cosine: true), 1e-12, "epochs after the retry run at the halved rate");
        lrs[2].Lr.Should().BeApproximately(LearningRateSchedule.At(2, 3, lrs[0].Lr / 2, cosine: true), 1e-12);
        Directory.GetFiles(directory, "checkpoint_*.hcsc").Should().Contain(f => f.EndsWith("checkpoint_0003.hcsc", StringComparison.Ordinal));
    }

    [Fact]
    public void A_run_killed_during_its_final_evaluation_resumes_to_evaluate_without_training_again()
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory), "trained-evaluation"))
        {
            child.WaitForLine("paused at trained-evaluation");
            child.Kill();
        }

        Metrics(directory).Select(Evaluation).Should().NotContain("final");
        using var resumed = new Child(Arguments(directory, "--resume", "auto"), pauseAt: null);
        resumed.WaitForExit().Should().Be(0, string.Join('\n', resumed.Output));
        resumed.Output.Should().Contain(l => l.Contains("all 3 epochs done; evaluating the trained model", StringComparison.Ordinal))
            .And.NotContain(l => l.StartsWith("epoch ", StringComparison.Ordinal), "no epoch is trained again");
        Metrics(directory).Count(m => !m.TryGetProperty("evaluation", out _)).Should().Be(3, "each epoch is recorded once");
        Metrics(directory).Select(Evaluation).Should().Contain("final");
    }

    private static string? Evaluation(JsonElement record) => record.TryGetProperty("evaluation", out var e) ? e.GetString() : null;

    private static long TrainingCheckpointEpoch(string path)
    {
        Hcsc.Models.Checkpoints.TrainingCheckpoint.Verify(path);
        using var reader = new BinaryReader(File.OpenRead(path));
        reader.ReadString(); // magic
        reader.ReadInt32();  // format version
        return reader.ReadInt64();
    }

    [Theory]
    [InlineData(15, 143, "SIGTERM")]
    [InlineData(2, 130, "SIGINT")]
    public void A_stop_signal_finishes_the_step_writes_a_checkpoint_and_exits_with_its_code(int signal, int exitCode, string name)
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory), "epoch2-step2"))
        {
            child.WaitForLine("paused at epoch2-step2");
            kill(child.Id, signal).Should().Be(0);
            child.WaitForExit().Should().Be(exitCode, string.Join('\n', child.Output));
            child.Output.Should().Contain(l => l.Contains($"{name} received", StringComparison.Ordinal))
                .And.Contain(l => l.Contains("(epoch 2, step 2)", StringComparison.Ordinal));
        }

        ResumeAndCompare(directory, "1 epochs and 2 steps of epoch 2 done; continuing there");
    }

    // `dotnet run` as the parent, in a process group of its own (setsid): the shape of a run under a scheduler or a
    // terminal, where a signal reaches the whole group and dotnet run forwards it to the app once more.
    private static string[] DotnetRun(string directory, params string[] extra) =>
        ["run", "--project", Path.Combine(Hcsc.Tests.Build.ScalarTemporaryGuardTests.RepoRoot(), "samples", "ImageNetPretrain"), "-c", "Release", "--no-build", "--", .. Arguments(directory, extra).Skip(1)];

    [Theory]
    [InlineData(true)]   // kill -TERM -PGID: scancel, timeout, systemd's control-group kill
    [InlineData(false)]  // kill -TERM PID of dotnet run alone
    public void Sigterm_to_the_process_group_or_to_dotnet_run_is_one_stop_request_with_a_checkpoint(bool wholeGroup)
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(DotnetRun(directory), "epoch2-step2", launcher: ["setsid", "dotnet"]))
        {
            child.WaitForLine("paused at epoch2-step2");
            kill(wholeGroup ? -child.Id : child.Id, 15).Should().Be(0);
            child.WaitForExit().Should().Be(143, string.Join('\n', child.Output));
            child.Output.Should().Contain(l => l.Contains("(epoch 2, step 2)", StringComparison.Ordinal), "the checkpoint of the stop is written");
        }

        ResumeAndCompare(directory, "1 epochs and 2 steps of epoch 2 done; continuing there");
    }

    [Fact]
    public void Sigusr1_writes_a_checkpoint_at_the_end_of_the_step_and_the_run_goes_on_unchanged()
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory), "epoch2-step2"))
        {
            child.WaitForLine("paused at epoch2-step2");
            kill(child.Id, 10).Should().Be(0);
            child.WaitForExit().Should().Be(0, string.Join('\n', child.Output));
            child.Output.Should().Contain(l => l.Contains("SIGUSR1 received: writing a checkpoint", StringComparison.Ordinal))
                .And.Contain(l => l.Contains("(epoch 2, step 2)", StringComparison.Ordinal), "the checkpoint asked for");
        }

        string reference = Uninterrupted();
        foreach (int epoch in new[] { 0, 1, 2 })
        {
            StepLosses(directory, epoch).Should().Equal(StepLosses(reference, epoch), $"epoch index {epoch}: a checkpoint changes nothing");
        }
    }

    [Fact]
    public void Sigusr1_with_on_signal_requeue_checkpoints_exits_75_and_the_requeued_run_says_so_and_continues()
    {
        string directory = Path.Combine(_directory, "run");
        using (var child = new Child(Arguments(directory, "--on-signal", "Requeue"), "epoch2-step2"))
        {
            child.WaitForLine("paused at epoch2-step2");
            kill(child.Id, 10).Should().Be(0);
            child.WaitForExit().Should().Be(GracefulStop.RequeueExitCode, string.Join('\n', child.Output));
        }

        // As Slurm starts a requeued job: SLURM_RESTART_COUNT counts the restarts.
        ResumeAndCompare(directory, "Slurm restart 1 of job 42 (requeued)", new Dictionary<string, string> { ["SLURM_RESTART_COUNT"] = "1", ["SLURM_JOB_ID"] = "42" });
    }

    [Fact]
    public void A_resume_with_another_model_says_so_in_a_few_lines_and_leaves_the_runs_record_for_its_evaluations()
    {
        string directory = Path.Combine(_directory, "run");
        using (var first = new Child(Arguments(directory), pauseAt: null))
        {
            first.WaitForExit().Should().Be(0, string.Join('\n', first.Output));
        }

        string manifest = Path.Combine(directory, RunManifest.FileName);
        byte[] record = File.ReadAllBytes(manifest);
        using (var refused = new Child(Arguments(directory, "--resume", "auto", "--arch", "resnet34"), pauseAt: null))
        {
            refused.WaitForExit().Should().Be(1, string.Join('\n', refused.Output));
            var error = refused.Output.Where(l => !l.StartsWith('{') && !l.StartsWith("HCSC pretraining", StringComparison.Ordinal)).ToList();
            error.Should().Contain(l => l.Contains("was written by a model of another shape", StringComparison.Ordinal));
            error.Should().Contain(l => l.Contains("the checkpoint's run (run.json): arch resnet18, width 8", StringComparison.Ordinal))
                .And.Contain(l => l.Contains("this attempt:", StringComparison.Ordinal) && l.Contains("arch resnet34", StringComparison.Ordinal));
            string.Join('\n', error).Split('\n').Length.Should().BeLessThanOrEqualTo(12, string.Join('\n', error));
        }

        File.ReadAllBytes(manifest).Should().Equal(record, "a refused resume must not rewrite the run's record");
        using var knn = new Child([Path.Combine(AppContext.BaseDirectory, "hcsc-pretrain.dll"), "knn", "--checkpoint", Path.Combine(directory, PretrainRun.LatestCheckpoint), "--k", "5", "--workers", "0"], pauseAt: null);
        knn.WaitForExit().Should().Be(0, "the run's own checkpoint still evaluates: " + string.Join('\n', knn.Output));
    }

    [Fact]
    public void A_resume_takes_the_model_shape_from_the_runs_record_unless_the_command_line_sets_it()
    {
        string directory = Path.Combine(_directory, "run");
        using (var first = new Child(Arguments(directory), "epoch2-step1"))
        {
            first.WaitForLine("paused at epoch2-step1");
            kill(first.Id, 15).Should().Be(0);
            first.WaitForExit().Should().Be(143, string.Join('\n', first.Output));
        }

        // The same command without --width 8 and --dim 16: the defaults (16 and the preset's 64) would not fit.
        var withoutShape = Arguments(directory, "--resume", "auto").ToList();
        foreach (string flag in new[] { "--width", "--dim" })
        {
            withoutShape.RemoveRange(withoutShape.IndexOf(flag), 2);
        }

        using var resumed = new Child([.. withoutShape], pauseAt: null);
        resumed.WaitForExit().Should().Be(0, string.Join('\n', resumed.Output));
        resumed.Output.Should().Contain(l => l.Contains("Resuming with the run's model shape from run.json:", StringComparison.Ordinal)
            && l.Contains("Model:Dim = 16", StringComparison.Ordinal) && l.Contains("--width 8", StringComparison.Ordinal));
        string reference = Uninterrupted();
        StepLosses(directory, 2).Should().Equal(StepLosses(reference, 2), "the resumed run is the same run");
    }

    [Fact]
    public void A_cpu_where_nnpack_cannot_initialise_gets_one_log_line_not_one_per_convolution()
    {
        using var child = new Child(Arguments(Path.Combine(_directory, "run")), pauseAt: null);
        child.WaitForExit().Should().Be(0, string.Join('\n', child.Output));
        child.Output.Count(l => l.Contains("Could not initialize NNPACK", StringComparison.Ordinal)).Should().BeLessThanOrEqualTo(1,
            "libtorch logs the failure before every convolution of a batch of 16 or more while its NNPACK switch is on (460 lines for a run this size)");
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int kill(int pid, int signal);
}
