namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// Named configurations, as <c>Section:Key</c> settings of <see cref="Hcsc.Core.Options.HcscOptions"/>.
/// The six reference configurations are single- or multi-crop HCSC with ResNet-50 on ImageNet for
/// 200, 400 or 800 epochs; <c>synthetic-quick</c> is the built-in default that finishes in minutes on a CPU.
/// </summary>
public static class Presets
{
    private static readonly Dictionary<string, string?> MultiCrop = new()
    {
        ["Augmentation:MultiCrop"] = "true",
        ["Augmentation:LocalCropSizes:0"] = "192", ["Augmentation:LocalCropSizes:1"] = "160", ["Augmentation:LocalCropSizes:2"] = "128", ["Augmentation:LocalCropSizes:3"] = "96",
        ["Augmentation:LocalCropMinScales:0"] = "0.172", ["Augmentation:LocalCropMinScales:1"] = "0.143", ["Augmentation:LocalCropMinScales:2"] = "0.114", ["Augmentation:LocalCropMinScales:3"] = "0.086",
        ["Augmentation:LocalCropMaxScales:0"] = "0.86", ["Augmentation:LocalCropMaxScales:1"] = "0.715", ["Augmentation:LocalCropMaxScales:2"] = "0.571", ["Augmentation:LocalCropMaxScales:3"] = "0.429",
    };

    /// <summary>Every preset by name.</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyDictionary<string, string?>> All = new Dictionary<string, IReadOnlyDictionary<string, string?>>(StringComparer.OrdinalIgnoreCase)
    {
        ["hcsc-200ep"] = Reference(200, multiCrop: false),
        ["hcsc-400ep"] = Reference(400, multiCrop: false),
        ["hcsc-800ep"] = Reference(800, multiCrop: false),
        ["hcsc-multicrop-200ep"] = Reference(200, multiCrop: true),
        ["hcsc-multicrop-400ep"] = Reference(400, multiCrop: true),
        ["hcsc-multicrop-800ep"] = Reference(800, multiCrop: true),
        // Batch 32 (18 -> 37 steps an epoch, for about 12 % more time an epoch): at batch 64 seed 4 ended level with the
        // untrained network on kNN (65.91 %) on one machine; at 32 the five seeds end 15-43 points above it there (docs/results.md).
        ["synthetic-quick"] = new Dictionary<string, string?>
        {
            ["Model:Arch"] = "resnet18", ["Model:Dim"] = "64", ["Model:QueueLength"] = "1024", ["Model:BatchNormSplits"] = "4", ["Model:EncoderMomentum"] = "0.99",
            ["Training:Epochs"] = "20", ["Training:WarmupEpochs"] = "5", ["Training:BatchSize"] = "32", ["Training:LearningRate"] = "0.24", ["Training:CheckpointEvery"] = "5",
            ["Training:Workers"] = "2",
            ["Clustering:NumClusters:0"] = "24", ["Clustering:NumClusters:1"] = "12", ["Clustering:NumClusters:2"] = "4",
            ["Clustering:Restarts"] = "2", ["Augmentation:ImageSize"] = "32",
        },
        ["fashion-mnist"] = SmallGreyImages(),
        ["mnist"] = SmallGreyImages(),
    };

    /// <summary>The preset a dataset gets when none is named: its own for the small-image sets, none otherwise.</summary>
    public static string? DefaultFor(string dataset) => dataset switch
    {
        "synthetic" => "synthetic-quick",
        "fashion-mnist" or "mnist" => dataset,
        _ => null,
    };

    // 60 000 images of 28x28 on a CPU: a small-stem ResNet-18 (base width 16 from the sample's defaults), five epochs
    // of which two are MoCo warm-up (about 30 minutes on 2 cores: docs/results.md, "Fashion-MNIST"), prototypes
    // 200 -> 50 -> 10 (10 classes). Learning rate 0.06 per 256 images (0.03 at batch 128): at 0.24 the MoCo loss rose after the first epoch and kNN fell below the untrained network's
    // (Fashion-MNIST, 20 000 images, 4 MoCo epochs, seed 1: kNN 75.7 % untrained -> 70.9 % at lr 0.24, 77.0 % at 0.06,
    // 76.2 % at 0.03). Evaluated on whole images (EvalCropFraction 1): ImageNet's resize-256 / crop-224 drops a quarter
    // of a 28-pixel image's area, and kNN top-1 with it (HCSC, seed 1, batch 64, 5 epochs: 83.32 % cropped, 84.28 % whole).
    private static Dictionary<string, string?> SmallGreyImages() => new()
    {
        ["Model:Arch"] = "resnet18", ["Model:Dim"] = "64", ["Model:QueueLength"] = "4096", ["Model:BatchNormSplits"] = "4", ["Model:EncoderMomentum"] = "0.99",
        ["Training:Epochs"] = "5", ["Training:WarmupEpochs"] = "2", ["Training:BatchSize"] = "128", ["Training:LearningRate"] = "0.06", ["Training:CheckpointEvery"] = "1",
        ["Training:Workers"] = "2",
        ["Clustering:NumClusters:0"] = "200", ["Clustering:NumClusters:1"] = "50", ["Clustering:NumClusters:2"] = "10",
        ["Clustering:Restarts"] = "2", ["Augmentation:ImageSize"] = "28", ["Augmentation:EvalCropFraction"] = "1",
    };

    private static Dictionary<string, string?> Reference(int epochs, bool multiCrop)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Model:Arch"] = "resnet50", ["Model:Dim"] = "128", ["Model:Mlp"] = "true", ["Model:QueueLength"] = "16384", ["Objective:Temperature"] = "0.2", ["Model:EncoderMomentum"] = "0.999",
            ["Training:Epochs"] = epochs.ToString(System.Globalization.CultureInfo.InvariantCulture), ["Training:WarmupEpochs"] = "20", ["Training:BatchSize"] = "256",
            ["Training:LearningRate"] = "0.03", ["Training:Cosine"] = "true", ["Augmentation:AugPlus"] = "true", ["Augmentation:ImageSize"] = "224",
            ["Clustering:NumClusters:0"] = "3000", ["Clustering:NumClusters:1"] = "2000", ["Clustering:NumClusters:2"] = "1000",
            ["Augmentation:MultiCrop"] = "false",
        };
        if (multiCrop)
        {
            foreach (var (key, value) in MultiCrop)
            {
                settings[key] = value;
            }
        }

        return settings;
    }
}
