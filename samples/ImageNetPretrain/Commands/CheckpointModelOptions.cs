using System.CommandLine;
using Hcsc.Core.Devices;
using Hcsc.Core.Options;
using Hcsc.Core.Randomness;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Checkpoints;
using Hcsc.Models.Optimization;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>A pretrained model ready for evaluation, with the data and settings it was evaluated with.</summary>
/// <param name="Model">The encoders, on <paramref name="Device"/>.</param>
/// <param name="Data">Training and validation images.</param>
/// <param name="EvaluationView">The evaluation view: its side and centre crop (the run's unless overridden).</param>
/// <param name="Device">Where the model runs.</param>
/// <param name="Epoch">Epochs the checkpoint was trained for (-1 when unknown: a PyTorch file).</param>
/// <param name="ExperimentDirectory">The folder of the checkpoint, where evaluation records go.</param>
/// <param name="Run">The run's settings (run.json beside the checkpoint), when present.</param>
/// <param name="Untrained">The weights are freshly initialised (<c>--untrained</c>), not the checkpoint's: the baseline.</param>
public sealed record CheckpointModel(HcscModel Model, DatasetPair Data, ViewTransform EvaluationView, Device Device, long Epoch, string ExperimentDirectory, RunManifest? Run, bool Untrained = false) : IDisposable
{
    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}

/// <summary>
/// The options every evaluation command shares (<c>knn</c>, <c>linear</c>, <c>clusters</c>): a checkpoint — ours
/// (<c>.hcsc</c>, settings from the <c>run.json</c> beside it) or the reference's PyTorch <c>.pth.tar</c> — and
/// the data and model shape, each defaulting to the run's.
/// </summary>
public sealed class CheckpointModelOptions
{
    private readonly Option<FileInfo> _checkpoint = new("--checkpoint") { Description = "A checkpoint written by pretrain (.hcsc), or a MoCo/HCSC PyTorch checkpoint (.pth.tar)", Required = true };
    private readonly Option<string?> _dataset = new("--dataset") { Description = $"Dataset: {string.Join(", ", DatasetFactory.Names)} (default: the run's, from run.json beside the checkpoint)" };
    private readonly Option<string?> _data = new("--data") { Description = "Data folder (as for pretrain; default: the run's)" };
    private readonly Option<string?> _arch = new("--arch", "-a") { Description = "Backbone of the checkpoint (default: the run's)" };
    private readonly Option<int?> _dim = new("--dim") { Description = "Embedding size of the checkpoint (default: the run's)" };
    private readonly Option<int?> _width = new("--width") { Description = "ResNet base width of the checkpoint (default: the run's)" };
    private readonly Option<bool?> _smallStem = new("--small-stem") { Description = "Small-image stem (default: the run's)" };
    private readonly Option<int?> _imageSize = new("--image-size") { Description = "Evaluation crop size (default: the run's)" };
    private readonly Option<double?> _evalCropFraction = new("--eval-crop-fraction") { Description = "Centre crop of the evaluation view, a fraction of the resized image: 0.875 resizes to size / 0.875 and keeps the centre (ImageNet's 256 / 224), 1 the whole image (default: the run's)" };
    private readonly Option<int> _workers = new("--workers", "-j") { Description = "Data-loading threads", DefaultValueFactory = _ => 2 };
    private readonly Option<string> _device = new("--device") { Description = "auto, cpu, cuda or cuda:N", DefaultValueFactory = _ => "auto" };
    private readonly Option<bool> _untrained = new("--untrained") { Description = "Evaluate the checkpoint's architecture with fresh weights (seeded with the run's seed) instead of its own: the untrained baseline" };

    /// <summary>Data-loading threads.</summary>
    public Option<int> Workers => _workers;

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { _checkpoint, _dataset, _data, _arch, _dim, _width, _smallStem, _imageSize, _evalCropFraction, _workers, _device, _untrained })
        {
            command.Options.Add(option);
        }
    }

    /// <summary>Builds the model, loads the checkpoint's weights and opens the data.</summary>
    /// <exception cref="FileNotFoundException">The checkpoint does not exist.</exception>
    public CheckpointModel Load(ParseResult parse)
    {
        var file = parse.GetValue(_checkpoint)!;
        if (!file.Exists)
        {
            throw new FileNotFoundException($"The checkpoint '{file.FullName}' does not exist.");
        }

        string directory = file.DirectoryName ?? ".";
        var run = RunManifest.TryRead(directory);
        var device = TorchDevices.Resolve(parse.GetValue(_device)!);
        int size = parse.GetValue(_imageSize) ?? run?.Options.Augmentation.ImageSize ?? 224;
        double cropFraction = parse.GetValue(_evalCropFraction) ?? run?.Options.Augmentation.EvalCropFraction ?? ViewTransform.ImageNetCropFraction;
        if (!ViewTransform.IsCropFraction(cropFraction))
        {
            throw new ArgumentException($"--eval-crop-fraction must be in (0, 1], got {cropFraction}.");
        }

        var pair = DatasetFactory.Open(parse.GetValue(_dataset) ?? run?.Settings.Dataset ?? "synthetic", parse.GetValue(_data) ?? run?.Settings.Data, size, run?.Settings.MaxImages ?? 0);
        var modelOptions = new ModelOptions
        {
            Arch = parse.GetValue(_arch) ?? run?.Options.Model.Arch ?? "resnet50",
            Dim = parse.GetValue(_dim) ?? run?.Options.Model.Dim ?? 128,
            Mlp = run?.Options.Model.Mlp ?? true,
            BatchNormSplits = run?.Options.Model.BatchNormSplits ?? 1,
        };
        var backbone = new ResNetOptions
        {
            Arch = modelOptions.Arch,
            BaseWidth = parse.GetValue(_width) ?? run?.Settings.Width ?? 64,
            SmallImageStem = parse.GetValue(_smallStem) ?? run?.Settings.SmallStem ?? false,
        };
        bool untrained = parse.GetValue(_untrained);
        using var seeding = untrained ? RandomSources.SeedEverything(run?.Options.Training.Seed ?? 0) : null;
        var model = new HcscModel(modelOptions, () => ResNet.Create(backbone));
        try
        {
            long epoch = -1;
            if (untrained)
            {
                epoch = 0;
            }
            else if (file.Name.EndsWith(".pth.tar", StringComparison.OrdinalIgnoreCase) || file.Extension.Equals(".pth", StringComparison.OrdinalIgnoreCase))
            {
                PyTorchImport.LoadPretrainingModel(model, file.FullName);
            }
            else
            {
                // The checkpoint holds the optimiser's state too; a throwaway SGD of the run's settings reads past it.
                var training = run?.Options.Training ?? new TrainingOptions();
                using var optimizer = new ExplicitScalarSgd(model.TrainableParameters(), training.ScaledLearningRate, training.SgdMomentum, weightDecay: training.WeightDecay);
                var contents = TrainingCheckpoint.Load(file.FullName, model, optimizer);
                foreach (var tensor in contents.ExtraTensors.Values)
                {
                    tensor.Dispose();
                }

                epoch = contents.Epoch;
            }

            model.to(device);
            return new CheckpointModel(model, pair, ViewTransform.Eval(size, cropFraction), device, epoch, directory, run, untrained);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Runs a command's body; a user error (see <see cref="IsUserError"/>) becomes one line on stderr and exit code 1.</summary>
    public static int ReportingUserErrors(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    /// <summary>Exceptions an evaluation command reports as one line and exit code 1.</summary>
    public static bool IsUserError(Exception e) =>
        e is ArgumentException or InvalidOperationException or IOException or InvalidDataException or FormatException or StateDictMismatchException or UnauthorizedAccessException;
}
