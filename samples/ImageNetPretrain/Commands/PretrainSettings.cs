namespace Hcsc.Samples.ImageNetPretrain.Commands;

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
}
