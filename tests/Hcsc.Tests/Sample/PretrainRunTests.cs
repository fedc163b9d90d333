using System.Text.Json;
using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Tests.Sample;

public sealed class PretrainRunTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hcsc-run-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static HcscOptions Tiny(int epochs) => new()
    {
        Model = new ModelOptions { Arch = "resnet18", Dim = 16, QueueLength = 64, BatchNormSplits = 2, EncoderMomentum = 0.9 },
        Training = new TrainingOptions { Epochs = epochs, WarmupEpochs = 1, BatchSize = 16, LearningRate = 0.1, CheckpointEvery = 1, Workers = 1, Device = "cpu", Seed = 5 },
        Clustering = new ClusteringOptions { NumClusters = [8, 4], Iterations = 5, Restarts = 1 },
        Augmentation = new AugmentationOptions { ImageSize = 16 },
    };

    private PretrainSettings Settings(string? resume = null) => new()
    {
        Dataset = "synthetic",
        ExperimentDirectory = _directory,
        Width = 8,
        SmallStem = true,
        MaxImages = 48,
        Resume = resume,
    };

    private List<JsonElement> Metrics() =>
        File.ReadAllLines(Path.Combine(_directory, "metrics.jsonl")).Select(line => JsonDocument.Parse(line).RootElement).ToList();

    private static double[] StepLosses(List<JsonElement> metrics, int epoch) =>
        metrics.Single(m => !m.TryGetProperty("evaluation", out _) && m.GetProperty("epoch").GetInt32() == epoch)
            .GetProperty("step_losses").EnumerateArray().Select(e => e.GetDouble()).ToArray();

    [Fact]
    public void No_tensor_outlives_its_epoch_once_clustering_runs()
    {
        new PretrainRun(Tiny(epochs: 4), Settings(), new StringWriter()).Execute();
        var live = Metrics().Where(m => !m.TryGetProperty("evaluation", out _)).Select(m => m.GetProperty("live_tensors").GetInt64()).ToList();
        live.Should().HaveCount(4);
        live[3].Should().Be(live[2], "an HCSC epoch leaves as many tensors alive as the one before (dispose scopes everywhere); all: " + string.Join(", ", live));
    }

    [Fact]
    public void Trains_with_clustering_writes_metrics_and_checkpoints_and_resumes_where_it_stopped()
    {
        var log = new StringWriter();
        var first = new PretrainRun(Tiny(epochs: 2), Settings(), log).Execute();
        first.Before.Should().NotBeNull();
        File.Exists(Path.Combine(_directory, PretrainRun.LatestCheckpoint)).Should().BeTrue();
        File.Exists(Path.Combine(_directory, "checkpoint_0002.hcsc")).Should().BeTrue();
        foreach (string plot in RunPlots.FileNames)
        {
            byte[] png = File.ReadAllBytes(Path.Combine(_directory, "plots", plot));
            png.Length.Should().BeGreaterThan(5000, plot);
            png.Take(4).Should().Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], plot);
        }

        var events = Directory.GetFiles(Path.Combine(_directory, "tensorboard"), "events.out.tfevents.*");
        events.Should().ContainSingle();
        new FileInfo(events[0]).Length.Should().BeGreaterThan(500, "a scalar per step and per metric");

        var epochs = Metrics().Where(m => !m.TryGetProperty("evaluation", out _)).ToList();
        epochs.Select(m => m.GetProperty("epoch").GetInt32()).Should().Equal(0, 1);
        epochs[0].TryGetProperty("loss_icsc_0", out _).Should().BeFalse("epoch 0 is warm-up: plain InfoNCE");
        var clustered = epochs[1];
        foreach (string field in new[] { "lr", "loss", "loss_infonce", "loss_icsc_0", "loss_icsc_1", "loss_pcsc_0", "loss_pcsc_1", "acceptance_0", "acceptance_1", "seconds" })
        {
            clustered.TryGetProperty(field, out var value).Should().BeTrue(field);
            double.IsFinite(value.GetDouble()).Should().BeTrue(field);
        }

        epochs.Should().OnlyContain(m => m.GetProperty("embedding_spread").GetDouble() > 0 && m.GetProperty("embedding_spread").GetDouble() <= 1);
        log.ToString().Should().NotContain("collapsed");
        var evaluations = Metrics().Where(m => m.TryGetProperty("evaluation", out _)).ToList();
        evaluations.Select(m => m.GetProperty("evaluation").GetString()).Should().Equal("untrained", "final");
        evaluations.Should().OnlyContain(m => m.GetProperty("seconds").GetDouble() > 0, "an evaluation records its own time, apart from the epochs'");

        foreach (string field in new[] { "nmi", "ami", "ari", "nmi_coarse", "ami_coarse", "ari_coarse" })
        {
            clustered.GetProperty(field).GetArrayLength().Should().Be(2, field);
        }

        clustered.GetProperty("lr").GetDouble().Should().BeLessThan(epochs[0].GetProperty("lr").GetDouble(), "the cosine schedule decays");
        log.ToString().Should().Contain("clustered 48 embeddings into 8 -> 4 prototypes");

        var resumedLog = new StringWriter();
        var second = new PretrainRun(Tiny(epochs: 3), Settings(resume: "auto"), resumedLog).Execute();
        resumedLog.ToString().Should().Contain("2 epochs done; continuing at epoch 3");
        second.Before.Should().BeNull("a resumed run does not evaluate the untrained network again");
        Metrics().Where(m => !m.TryGetProperty("evaluation", out _)).Select(m => m.GetProperty("epoch").GetInt32()).Should().Equal(0, 1, 2);
        File.Exists(Path.Combine(_directory, "checkpoint_0003.hcsc")).Should().BeTrue();


        // knn rebuilds the run's model from run.json beside the checkpoint.
        var output = new StringWriter();
        var previous = Console.Out;
        Console.SetOut(output);
        try
        {
            HcscCli.Create().Parse(["knn", "--checkpoint", Path.Combine(_directory, PretrainRun.LatestCheckpoint), "--k", "5,10", "--workers", "0"]).Invoke().Should().Be(0);
            HcscCli.Create().Parse(["linear", "--checkpoint", Path.Combine(_directory, PretrainRun.LatestCheckpoint), "--epochs", "4", "--lr", "0.1", "--workers", "0"]).Invoke().Should().Be(0);
            HcscCli.Create().Parse(["linear", "--checkpoint", Path.Combine(_directory, PretrainRun.LatestCheckpoint), "--epochs", "2", "--lr", "0.1", "--augment", "--workers", "0"]).Invoke().Should().Be(0);
            HcscCli.Create().Parse(["semisup", "--checkpoint", Path.Combine(_directory, PretrainRun.LatestCheckpoint), "--percent", "25", "--epochs", "2", "--workers", "0"]).Invoke().Should().Be(0);
            HcscCli.Create().Parse(["clusters", "--checkpoint", Path.Combine(_directory, PretrainRun.LatestCheckpoint), "--workers", "0"]).Invoke().Should().Be(0);
            HcscCli.Create().Parse(["visualize", "--checkpoint", Path.Combine(_directory, PretrainRun.LatestCheckpoint), "--workers", "0", "--queue", "32"]).Invoke().Should().Be(0);
        }
        finally
        {
            Console.SetOut(previous);
        }

        output.ToString().Should().Contain("(checkpoint epoch 3)").And.Contain("k =    5: top-1")
            .And.MatchRegex(@"linear probe on .* \(checkpoint epoch 3\): top-1 \d+\.\d\d %, top-5 \d+\.\d\d %");
        output.ToString().Should().MatchRegex(@"level 1 vs coarse labels: NMI \d\.\d{3}, AMI -?\d\.\d{3}, ARI -?\d\.\d{3}");
        foreach (string picture in new[] { "hierarchy.png", "selection.png" })
        {
            byte[] png = File.ReadAllBytes(Path.Combine(_directory, "visualize", picture));
            png.Length.Should().BeGreaterThan(2000, picture);
            png.Take(4).Should().Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], picture);
        }

        output.ToString().Should().MatchRegex(@"semisup on .* \(checkpoint epoch 3, 12 labels\): top-1 \d+\.\d\d %");
        Metrics().Single(m => m.TryGetProperty("evaluation", out var e) && e.GetString() == "semisup").GetProperty("semisup_losses").GetArrayLength().Should().Be(2);
        var clusters = Metrics().Single(m => m.TryGetProperty("evaluation", out var e) && e.GetString() == "clusters");
        foreach (string field in new[] { "nmi", "ami", "ari", "nmi_coarse", "ami_coarse", "ari_coarse" })
        {
            clusters.GetProperty(field).GetArrayLength().Should().Be(2, field);
        }

        var linear = Metrics().Where(m => m.TryGetProperty("evaluation", out var e) && e.GetString() == "linear").ToList();
        linear.Select(m => m.GetProperty("linear_mode").GetString()).Should().Equal("cached", "augmented");
        linear[0].GetProperty("linear_losses").GetArrayLength().Should().Be(4);
        foreach (var record in linear)
        {
            record.GetProperty("linear_top1").GetDouble().Should().BeInRange(0, 100);
            record.GetProperty("linear_top5").GetDouble().Should().BeGreaterThanOrEqualTo(record.GetProperty("linear_top1").GetDouble());
        }
    }

    [Fact]
    public void Cluster_on_keys_clusters_the_steps_keys_without_a_second_pass_and_learns_like_the_pass()
    {
        string keysRun = Directory.CreateTempSubdirectory("hcsc-run-").FullName;
        try
        {
            new PretrainRun(Tiny(epochs: 3), Settings(), new StringWriter()).Execute();
            new PretrainRun(Tiny(epochs: 3), Settings() with { ExperimentDirectory = keysRun, ClusterOn = ClusterInput.Keys }, new StringWriter()).Execute();
            var pass = Metrics().Where(m => !m.TryGetProperty("evaluation", out _)).ToList();
            var keys = File.ReadAllLines(Path.Combine(keysRun, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
                .Where(m => !m.TryGetProperty("evaluation", out _)).ToList();
            StepLosses(keys, 0).Should().Equal(StepLosses(pass, 0), "the warm-up is the same run");
            foreach (int epoch in new[] { 1, 2 })
            {
                pass[epoch].GetProperty("embedded_images").GetInt32().Should().Be(48, "the reference embeds the whole training set");
                keys[epoch].GetProperty("embedded_images").GetInt32().Should().Be(0, "every image has a key from the steps (3 full batches of 16)");
                keys[epoch].GetProperty("kmeans_seconds").GetDouble().Should().BeGreaterThan(0);
                keys[epoch].GetProperty("nmi")[0].GetDouble().Should().BeInRange(0, 1);
                StepLosses(keys, epoch).Should().OnlyContain(loss => double.IsFinite(loss) && loss > 0);
            }
        }
        finally
        {
            Directory.Delete(keysRun, recursive: true);
        }
    }

    [Fact]
    public void The_preflight_does_not_change_the_runs_results()
    {
        new PretrainRun(Tiny(epochs: 2), Settings(), new StringWriter()).Execute();
        string skipped = Directory.CreateTempSubdirectory("hcsc-run-").FullName;
        try
        {
            new PretrainRun(Tiny(epochs: 2), Settings() with { ExperimentDirectory = skipped, SkipPreflight = true }, new StringWriter()).Execute();
            var metrics = File.ReadAllLines(Path.Combine(skipped, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            for (int epoch = 0; epoch < 2; epoch++)
            {
                StepLosses(metrics, epoch).Should().Equal(StepLosses(Metrics(), epoch), $"epoch {epoch}: the preflight runs before the run's random sources are seeded");
            }
        }
        finally
        {
            Directory.Delete(skipped, recursive: true);
        }
    }

    [Fact]
    public void The_tensor_kernel_path_trains_like_the_host_kernels()
    {
        // --kernels tensor: the code path of a GPU run, on the CPU. The warm-up epoch draws no masks, so both paths see
        // the same negatives; their step losses differ only by the rounding of two cross-entropy implementations,
        // carried through the steps (a width-8 ResNet-18: FloatBounds.Network). The HCSC epoch draws its masks from
        // other streams, so it is checked for finite losses and selection.
        var host = Tiny(epochs: 2);
        host.Objective.Kernels = KernelPath.Host;
        var tensorPath = Tiny(epochs: 2);
        tensorPath.Objective.Kernels = KernelPath.Tensor;
        string other = Directory.CreateTempSubdirectory("hcsc-run-").FullName;
        try
        {
            new PretrainRun(host, Settings(), new StringWriter()).Execute();
            new PretrainRun(tensorPath, Settings() with { ExperimentDirectory = other }, new StringWriter()).Execute();
            var tensorMetrics = File.ReadAllLines(Path.Combine(other, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            double tolerance = FloatBounds.Network(9 * 64, 20, 1);
            StepLosses(tensorMetrics, epoch: 0).Should().Equal(StepLosses(Metrics(), epoch: 0), (a, b) => Math.Abs(a - b) <= tolerance * Math.Abs(b));
            var clustered = tensorMetrics.Single(m => !m.TryGetProperty("evaluation", out _) && m.GetProperty("epoch").GetInt32() == 1);
            StepLosses(tensorMetrics, epoch: 1).Should().HaveCount(3).And.OnlyContain(loss => double.IsFinite(loss) && loss > 0);
            clustered.GetProperty("acceptance_0").GetDouble().Should().BeInRange(0, 1);
            clustered.GetProperty("loss_icsc_0").GetDouble().Should().BeGreaterThan(0);
        }
        finally
        {
            Directory.Delete(other, recursive: true);
        }
    }

    [Fact]
    public void A_run_stopped_after_an_epoch_resumes_with_the_same_steps_as_an_uninterrupted_run()
    {
        using var stop = new CancellationTokenSource();
        var log = new CancelOnLine("(epoch 2)", stop);
        var interrupted = () => new PretrainRun(Tiny(epochs: 3), Settings(), log).Execute(stop.Token);
        interrupted.Should().Throw<OperationCanceledException>();
        Metrics().Where(m => !m.TryGetProperty("evaluation", out _)).Should().HaveCount(2);

        new PretrainRun(Tiny(epochs: 3), Settings(resume: "auto"), new StringWriter()).Execute();
        var resumed = StepLosses(Metrics(), epoch: 2);

        string uninterrupted = Directory.CreateTempSubdirectory("hcsc-run-").FullName;
        try
        {
            new PretrainRun(Tiny(epochs: 3), Settings() with { ExperimentDirectory = uninterrupted }, new StringWriter()).Execute();
            var metrics = File.ReadAllLines(Path.Combine(uninterrupted, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            resumed.Should().HaveCount(3).And.Equal(StepLosses(metrics, epoch: 2), "a resumed run continues bit for bit on the CPU");
        }
        finally
        {
            Directory.Delete(uninterrupted, recursive: true);
        }
    }

    [Fact]
    public void A_stop_request_checkpoints_inside_the_epoch_and_the_resumed_run_takes_the_same_steps()
    {
        var stop = new GracefulStop();
        var log = new ActOnLine("epoch 2: clustered", () => stop.Request(143));
        var interrupted = () => new PretrainRun(Tiny(epochs: 3), Settings(), log, stop).Execute();
        interrupted.Should().Throw<RunStoppedException>().WithMessage("Stopped in epoch 2 after step 1 with a checkpoint*--resume auto*").Which.ExitCode.Should().Be(143);
        log.ToString().Should().Contain("(epoch 2, step 1)");

        var resumedLog = new StringWriter();
        new PretrainRun(Tiny(epochs: 3), Settings(resume: "auto") with { CheckpointEverySteps = 2 }, resumedLog).Execute();
        resumedLog.ToString().Should().Contain("1 epochs and 1 steps of epoch 2 done; continuing there").And.Contain("(epoch 3, step 2)");
        var resumed = Metrics();

        string uninterrupted = Directory.CreateTempSubdirectory("hcsc-run-").FullName;
        try
        {
            new PretrainRun(Tiny(epochs: 3), Settings() with { ExperimentDirectory = uninterrupted }, new StringWriter()).Execute();
            var expected = File.ReadAllLines(Path.Combine(uninterrupted, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            foreach (int epoch in new[] { 1, 2 })
            {
                StepLosses(resumed, epoch).Should().HaveCount(3).And.Equal(StepLosses(expected, epoch), $"epoch index {epoch} continues bit for bit");
            }
        }
        finally
        {
            Directory.Delete(uninterrupted, recursive: true);
        }
    }

    /// <summary>Log writer that runs an action once a line containing a marker is written.</summary>
    private sealed class ActOnLine(string marker, Action action) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value is not null && value.Contains(marker, StringComparison.Ordinal))
            {
                action();
            }
        }
    }

    /// <summary>Log writer that requests cancellation once a line containing a marker is written (a deterministic "kill").</summary>
    private sealed class CancelOnLine(string marker, CancellationTokenSource source) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value is not null && value.Contains(marker, StringComparison.Ordinal))
            {
                source.Cancel();
            }
        }
    }

    [Fact]
    public void Auto_resume_skips_damaged_checkpoints_and_says_so_and_old_ones_are_pruned()
    {
        new PretrainRun(Tiny(epochs: 2), Settings() with { KeepCheckpoints = 2 }, new StringWriter()).Execute();
        string latest = Path.Combine(_directory, PretrainRun.LatestCheckpoint);
        string second = Path.Combine(_directory, "checkpoint_0002.hcsc");
        File.WriteAllBytes(latest, File.ReadAllBytes(latest)[..1000]);            // truncated
        byte[] bytes = File.ReadAllBytes(second);
        bytes[bytes.Length / 2] ^= 1;                                             // one bit flipped
        File.WriteAllBytes(second, bytes);

        var log = new StringWriter();
        new PretrainRun(Tiny(epochs: 3), Settings(resume: "auto") with { KeepCheckpoints = 2 }, log).Execute();
        log.ToString().Should().Contain("checkpoint_latest.hcsc' is truncated").And.Contain("checkpoint_0002.hcsc' is corrupted")
            .And.Contain("falling back to").And.Contain("checkpoint_0001.hcsc").And.Contain("1 epochs done; continuing at epoch 2");
        Directory.GetFiles(_directory, "checkpoint_0*.hcsc").Select(Path.GetFileName).Order().Should().Equal("checkpoint_0002.hcsc", "checkpoint_0003.hcsc");
        Directory.GetFiles(_directory, "*.tmp").Should().BeEmpty();
    }

    [Fact]
    public void Auto_resume_with_no_intact_checkpoint_is_a_clear_error()
    {
        Directory.CreateDirectory(_directory);
        File.WriteAllBytes(Path.Combine(_directory, PretrainRun.LatestCheckpoint), []);
        var act = () => new PretrainRun(Tiny(epochs: 1), Settings(resume: "auto"), new StringWriter()).Execute();
        act.Should().Throw<InvalidDataException>().WithMessage("No intact checkpoint in*1 damaged*");
    }

    [Fact]
    public void A_missing_checkpoint_to_resume_is_a_clear_error()
    {
        var act = () => new PretrainRun(Tiny(epochs: 1), Settings(resume: Path.Combine(_directory, "nope.hcsc")), new StringWriter()).Execute();
        act.Should().Throw<ArgumentException>().WithMessage("--resume '*nope.hcsc' does not exist; give a checkpoint file, or 'auto'*");
    }

    [Fact]
    public void A_diverging_run_stops_with_advice_and_writes_no_checkpoint()
    {
        var options = Tiny(epochs: 1);
        options.Training.LearningRate = 1e30;
        var act = () => new PretrainRun(options, Settings(), new StringWriter()).Execute();
        act.Should().Throw<TrainingDivergedException>().WithMessage("*in epoch 1, step *weights were not updated*Lower --lr*--resume auto*")
            .Which.Epoch.Should().Be(1);
        File.Exists(Path.Combine(_directory, PretrainRun.LatestCheckpoint)).Should().BeFalse();
    }

    [Fact]
    public void A_divergence_after_a_checkpoint_leaves_the_last_good_checkpoint_untouched()
    {
        new PretrainRun(Tiny(epochs: 1), Settings(), new StringWriter()).Execute();
        string latest = Path.Combine(_directory, PretrainRun.LatestCheckpoint);
        byte[] good = File.ReadAllBytes(latest);

        var options = Tiny(epochs: 2);
        options.Training.LearningRate = 1e30;
        var act = () => new PretrainRun(options, Settings(resume: "auto"), new StringWriter()).Execute();
        act.Should().Throw<TrainingDivergedException>().Which.Epoch.Should().Be(2);
        File.ReadAllBytes(latest).Should().Equal(good);
        File.Exists(Path.Combine(_directory, "checkpoint_0002.hcsc")).Should().BeFalse();
    }

    [Fact]
    public void Batch_norm_with_one_value_per_channel_is_refused_before_training()
    {
        // 32 px through the ImageNet stem is 1x1 in the last stage; 8 images in 8 BN splits leave one value per channel.
        var options = Tiny(epochs: 1);
        options.Training.BatchSize = 8;
        options.Model.QueueLength = 16;
        options.Model.BatchNormSplits = 8;
        options.Augmentation.ImageSize = 32;
        var act = () => new PretrainRun(options, Settings() with { SmallStem = false }, new StringWriter()).Execute();
        act.Should().Throw<ArgumentException>().WithMessage("*key encoder's batch norm would see 1 value(s) per channel*8 images / 8 BN split(s), 1x1 feature map*BatchNormSplits*");
        File.Exists(Path.Combine(_directory, "metrics.jsonl")).Should().BeFalse("nothing was started");
    }

    [Fact]
    public void Later_layers_replace_whole_lists()
    {
        var merged = HcscOptionsLoader.Merge([
            new Dictionary<string, string?> { ["Clustering:NumClusters:0"] = "3000", ["Clustering:NumClusters:1"] = "2000", ["Clustering:NumClusters:2"] = "1000", ["Model:Dim"] = "128" },
            new Dictionary<string, string?> { ["Clustering:NumClusters:0"] = "30", ["Clustering:NumClusters:1"] = "20" },
        ]);
        merged.Should().BeEquivalentTo(new Dictionary<string, string?> { ["Clustering:NumClusters:0"] = "30", ["Clustering:NumClusters:1"] = "20", ["Model:Dim"] = "128" });
    }
}
