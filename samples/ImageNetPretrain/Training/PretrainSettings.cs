using Hcsc.Models.Backbones;
using Hcsc.Samples.ImageNetPretrain.Data;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>Settings of the sample's pretraining run that are not HCSC hyper-parameters.</summary>
public sealed record PretrainSettings
{
    /// <summary>synthetic (built in, the default), fashion-mnist, mnist or imagefolder.</summary>
    public string Dataset { get; init; } = "synthetic";

    /// <summary>Folder of the data: idx files, or an ImageFolder root with train/ and val/ (or class folders directly).</summary>
    public string? Data { get; init; }

    /// <summary>Experiment folder: checkpoints and metrics.jsonl.</summary>
    public string ExperimentDirectory { get; init; } = "runs/hcsc";

    /// <summary>A checkpoint to resume from, or "auto" for the experiment folder's latest.</summary>
    public string? Resume { get; init; }

    /// <summary>Base width of the ResNet (64 standard; 16 or 32 for CPU-scale runs).</summary>
    public int Width { get; init; } = 64;

    /// <summary>Use the small-image stem (3×3 stride-1 conv, no max-pool) for 28–64 px inputs.</summary>
    public bool SmallStem { get; init; }

    /// <summary>
    /// Memory layout of the ResNets' activations (<see cref="ActivationLayout.Auto"/>: channels-last on the CPU,
    /// channels-first on a GPU). Same mathematics; only float rounding and speed differ.
    /// </summary>
    public ActivationLayout Layout { get; init; }

    /// <summary>Evaluate kNN every this many epochs (0: only before and after training).</summary>
    public int KnnEvery { get; init; }

    /// <summary>Keep at most this many training images (0: all).</summary>
    public int MaxImages { get; init; }

    /// <summary>Also write checkpoint_latest.hcsc every this many steps inside an epoch (0: at epoch ends only), for long epochs.</summary>
    public int CheckpointEverySteps { get; init; }

    /// <summary>Stop at the first image that cannot be decoded instead of skipping it with a warning.</summary>
    public bool StrictData { get; init; }

    /// <summary>Numbered checkpoints to keep (the newest); 0 keeps them all. checkpoint_latest.hcsc is always kept.</summary>
    public int KeepCheckpoints { get; init; }

    /// <summary>
    /// After a NaN or infinite loss, gradient or weight, resume from the last good checkpoint with half the learning
    /// rate, at most this many times (0: stop with the error).
    /// </summary>
    public int DivergenceRetries { get; init; }

    /// <summary>none (one process) or mpi (data-parallel over the ranks of an MPI launcher; docs/distributed.md).</summary>
    public string Distributed { get; init; } = "none";

    /// <summary>Debug: verify every this many steps that every rank holds the same weights (0: only at the start).</summary>
    public int CheckWeightsEvery { get; init; }

    /// <summary>
    /// What the epoch's hierarchical k-means clusters: <see cref="ClusterInput.Pass"/> (default, the reference's: the
    /// training set embedded again by the key encoder under the evaluation view) or <see cref="ClusterInput.Keys"/> (the
    /// keys the training steps computed, kept by dataset index: no second pass).
    /// </summary>
    public ClusterInput ClusterOn { get; init; }

    /// <summary>What SIGUSR1 and SIGUSR2 do: checkpoint and go on (default), or checkpoint and exit with <see cref="GracefulStop.RequeueExitCode"/>.</summary>
    public UserSignalAction OnSignal { get; init; }

    /// <summary>Skip the <see cref="Preflight"/> checks on the run's device before the first epoch.</summary>
    public bool SkipPreflight { get; init; }

    /// <summary>On CUDA: let cuDNN time its convolution algorithms and keep the fastest (<see cref="Hcsc.Runtime.CudaSwitches"/>). Default on, as MoCo's reference.</summary>
    public bool CudnnBenchmark { get; init; } = true;

    /// <summary>On CUDA: TF32 tensor-core arithmetic for float32 products and convolutions. Default off (float32 results as tested).</summary>
    public bool Tf32 { get; init; }

    /// <summary>
    /// Every problem with these settings, each with what to change (empty when they are valid). Creates the experiment
    /// folder if needed and checks that a file can be written there, so a read-only or missing destination is found
    /// before any data is read.
    /// </summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (!DatasetFactory.Names.Contains(Dataset, StringComparer.OrdinalIgnoreCase))
        {
            problems.Add($"--dataset '{Dataset}' is not known; use one of: {string.Join(", ", DatasetFactory.Names)}.");
        }
        else if (Data is null && Dataset is "mnist" or "imagefolder")
        {
            problems.Add($"--data is required for {Dataset}: the folder of its {(Dataset == "mnist" ? "idx files" : "train/ and val/ class folders")}.");
        }

        if (Data is not null && !Directory.Exists(Data))
        {
            problems.Add($"--data '{Data}' is not a folder.");
        }

        if (Resume is not null && Resume != "auto" && !File.Exists(Resume))
        {
            problems.Add($"--resume '{Resume}' does not exist; give a checkpoint file, or 'auto' for the experiment folder's newest.");
        }

        foreach (var (name, value, minimum) in new[]
        {
            ("--width", Width, 1), ("--knn-every", KnnEvery, 0), ("--max-images", MaxImages, 0),
            ("--checkpoint-every-steps", CheckpointEverySteps, 0), ("--keep-checkpoints", KeepCheckpoints, 0),
            ("--divergence-retries", DivergenceRetries, 0), ("--check-weights-every", CheckWeightsEvery, 0),
        })
        {
            if (value < minimum)
            {
                problems.Add($"{name} must be at least {minimum}; got {value}.");
            }
        }

        if (Distributed is not ("none" or "mpi"))
        {
            problems.Add($"--distributed '{Distributed}' is not known; use none or mpi.");
        }

        if (WritingProblem(ExperimentDirectory) is { } writing)
        {
            problems.Add(writing);
        }

        return problems;
    }

    private static string? WritingProblem(string directory)
    {
        string probe = Path.Combine(directory, $".write-test-{Environment.ProcessId}");
        try
        {
            Directory.CreateDirectory(directory);
            File.WriteAllBytes(probe, [1]);
            File.Delete(probe);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"--exp-dir '{directory}' cannot be written ({e.Message}); choose a writable folder for checkpoints and metrics.";
        }
    }
}
