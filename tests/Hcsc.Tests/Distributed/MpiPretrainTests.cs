using Xunit.Abstractions;

namespace Hcsc.Tests.Distributed;

/// <summary>
/// The sample's data-parallel launch end to end: <c>mpirun -np 2 dotnet hcsc-pretrain.dll pretrain --distributed mpi</c>
/// on tiny synthetic settings (one MoCo warm-up epoch, two HCSC epochs clustered by the sharded k-means, the weights
/// verified identical every 2 steps) finishes, rank 0 alone prints the progress and writes the experiment folder, the
/// evaluation computed by both ranks together equals one process's, and an invalid global batch is refused on every rank
/// with a clear message. (The exactness against one process is checked by
/// tests/Hcsc.MpiTests' TrainingChecks, run by <see cref="MpiLaunchTests"/>.)
/// </summary>
public class MpiPretrainTests(ITestOutputHelper output)
{
    private static readonly string[] TinyRun =
    [
        "pretrain", "--distributed", "mpi", "--dataset", "synthetic", "--epochs", "3", "--warmup-epoch", "1", "--batch-size", "16",
        "--queue-length", "64", "--max-images", "64", "--width", "8", "--image-size", "16", "--workers", "1",
        "--set", "Model:BatchNormSplits=2", "--check-weights-every", "2", "--save-freq", "1",
    ];

    [MpiFact]
    public void Two_ranks_pretrain_warm_up_and_HCSC_epochs_and_only_rank_0_writes_the_experiment_folder()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"hcsc-mpi-pretrain-{Guid.NewGuid():N}");
        try
        {
            var (exit, text) = Launch([.. TinyRun, "--exp-dir", folder]);
            exit.Should().Be(0, $"the data-parallel run finishes on both ranks:\n{text}");
            text.Should().Contain("rank 0 of 2").And.Contain("rank 1 of 2")
                .And.Contain("Distributed: 2 ranks (this is rank 0); global batch 16, 8 images a rank; key batch shuffled over the ranks, 1 BN split(s) a rank")
                .And.Contain("epoch 2: clustered 60 embeddings").And.Contain("epoch 3: clustered 60 embeddings")
                .And.Contain("kNN top-1: untrained").And.NotContain("this is rank 1");
            CountOf(text, "HCSC pretraining").Should().Be(1, "the other rank prints nothing but errors");
            CountOf(text, "checkpoint: ").Should().Be(3, "one checkpoint an epoch, written by rank 0 alone");
            File.Exists(Path.Combine(folder, "checkpoint_latest.hcsc")).Should().BeTrue();
            File.Exists(Path.Combine(folder, "checkpoint_0003.hcsc")).Should().BeTrue();
            File.ReadAllLines(Path.Combine(folder, "metrics.jsonl")).Should().HaveCount(5, "untrained, three epochs, trained: one line each, from rank 0");
            Directory.GetFiles(folder, "*.tmp", SearchOption.AllDirectories).Should().BeEmpty();
        }
        finally
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    [MpiFact]
    public void A_global_batch_that_the_ranks_do_not_divide_is_refused()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"hcsc-mpi-pretrain-{Guid.NewGuid():N}");
        try
        {
            string[] arguments = [.. TinyRun, "--exp-dir", folder];
            arguments[Array.IndexOf(arguments, "Model:BatchNormSplits=2")] = "Model:BatchNormSplits=1";
            var (exit, text) = Launch(arguments, ranks: 3);
            exit.Should().NotBe(0);
            text.Should().Contain("Training:BatchSize (16) is the global batch and must be a multiple of the number of ranks (3)");
            File.Exists(Path.Combine(folder, "checkpoint_latest.hcsc")).Should().BeFalse();
        }
        finally
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    [MpiFact]
    public void Two_ranks_evaluate_the_untrained_network_as_one_process_does()
    {
        // Each rank embeds half of both sets for the kNN and the ranks cluster with the sharded k-means: the figures must
        // be one process's.
        string one = Path.Combine(Path.GetTempPath(), $"hcsc-mpi-pretrain-{Guid.NewGuid():N}");
        string two = Path.Combine(Path.GetTempPath(), $"hcsc-mpi-pretrain-{Guid.NewGuid():N}");
        try
        {
            string[] shortRun = [.. TinyRun];
            shortRun[Array.IndexOf(shortRun, "--epochs") + 1] = "1";
            string[] single = [.. shortRun, "--exp-dir", one];
            single[Array.IndexOf(single, "mpi")] = "none";
            var (exitOne, textOne) = Launch(single, ranks: 1);
            var (exitTwo, textTwo) = Launch([.. shortRun, "--exp-dir", two]);
            exitOne.Should().Be(0, textOne);
            exitTwo.Should().Be(0, textTwo);
            UntrainedEvaluation(textTwo).Should().Be(UntrainedEvaluation(textOne));
        }
        finally
        {
            foreach (string folder in new[] { one, two }.Where(Directory.Exists))
            {
                Directory.Delete(folder, recursive: true);
            }
        }

        // "evaluation (untrained): kNN top-1 k=10: …; NMI per level … (0.2s)" without the time.
        static string UntrainedEvaluation(string text)
        {
            string line = text.Split('\n').Single(l => l.StartsWith("evaluation (untrained):", StringComparison.Ordinal)).TrimEnd();
            return line[..line.LastIndexOf(" (", StringComparison.Ordinal)];
        }
    }

    [MpiFact]
    public void Two_ranks_resumed_after_an_HCSC_epoch_continue_exactly_as_the_uninterrupted_run()
    {
        // After epoch 2 (an HCSC epoch) the ranks' selection-mask draws have diverged; each must resume its own, so the
        // third epoch of the resumed run repeats the uninterrupted run's step for step.
        string whole = Path.Combine(Path.GetTempPath(), $"hcsc-mpi-pretrain-{Guid.NewGuid():N}");
        string resumed = Path.Combine(Path.GetTempPath(), $"hcsc-mpi-pretrain-{Guid.NewGuid():N}");
        try
        {
            var (exitWhole, textWhole) = Launch([.. TinyRun, "--exp-dir", whole]);
            exitWhole.Should().Be(0, textWhole);
            Directory.CreateDirectory(resumed);
            string checkpoint = Path.Combine(resumed, "checkpoint_0002.hcsc");
            File.Copy(Path.Combine(whole, "checkpoint_0002.hcsc"), checkpoint);
            var (exitResumed, textResumed) = Launch([.. TinyRun, "--exp-dir", resumed, "--resume", checkpoint]);
            exitResumed.Should().Be(0, textResumed);
            textResumed.Should().Contain("2 epochs done; continuing at epoch 3").And.NotContain("draws afresh");

            StepLossesOfEpoch(resumed, 2).Should().Equal(StepLossesOfEpoch(whole, 2), "each rank continues its own random draws");
        }
        finally
        {
            foreach (string folder in new[] { whole, resumed }.Where(Directory.Exists))
            {
                Directory.Delete(folder, recursive: true);
            }
        }

        static double[] StepLossesOfEpoch(string folder, int epoch) => File.ReadAllLines(Path.Combine(folder, "metrics.jsonl"))
            .Select(line => System.Text.Json.JsonDocument.Parse(line).RootElement)
            .Single(record => record.GetProperty("epoch").GetInt32() == epoch && record.TryGetProperty("step_losses", out _))
            .GetProperty("step_losses").EnumerateArray().Select(loss => loss.GetDouble()).ToArray();
    }

    private (int Exit, string Text) Launch(string[] arguments, int ranks = 2) =>
        MpiRun.Launch(output, Path.Combine(AppContext.BaseDirectory, "hcsc-pretrain.dll"), arguments, ranks);

    private static int CountOf(string text, string part)
    {
        int count = 0;
        for (int at = text.IndexOf(part, StringComparison.Ordinal); at >= 0; at = text.IndexOf(part, at + part.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
