using System.CommandLine;
using System.Globalization;
using Hcsc.Core.Devices;
using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Checkpoints;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary><c>knn</c>: weighted kNN evaluation (spec §5) of a pretraining checkpoint's backbone.</summary>
public static class KnnCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("knn", "Weighted kNN top-1/top-5 (k = 10, 20, 100, 200; T = 0.07) of a checkpoint's backbone features.");
        var checkpoint = new Option<FileInfo>("--checkpoint") { Description = "A checkpoint written by pretrain", Required = true };
        var dataset = new Option<string?>("--dataset") { Description = $"Dataset: {string.Join(", ", DatasetFactory.Names)} (default: the run's, from run.json beside the checkpoint)" };
        var data = new Option<string?>("--data") { Description = "Data folder (as for pretrain; default: the run's)" };
        var arch = new Option<string?>("--arch", "-a") { Description = "Backbone of the checkpoint (default: the run's)" };
        var dim = new Option<int?>("--dim") { Description = "Embedding size of the checkpoint (default: the run's)" };
        var width = new Option<int?>("--width") { Description = "ResNet base width of the checkpoint (default: the run's)" };
        var smallStem = new Option<bool?>("--small-stem") { Description = "Small-image stem (default: the run's)" };
        var imageSize = new Option<int?>("--image-size") { Description = "Evaluation crop size (default: the run's)" };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Images per forward pass", DefaultValueFactory = _ => 128 };
        var workers = new Option<int>("--workers", "-j") { Description = "Data-loading threads", DefaultValueFactory = _ => 2 };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N", DefaultValueFactory = _ => "auto" };
        var ks = new Option<string>("--k") { Description = "Neighbour counts, comma-separated", DefaultValueFactory = _ => "10,20,100,200" };
        foreach (var option in new Option[] { checkpoint, dataset, data, arch, dim, width, smallStem, imageSize, batch, workers, device, ks })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse =>
        {
            try
            {
                var file = parse.GetValue(checkpoint)!;
                var run = RunManifest.TryRead(file.DirectoryName ?? ".");
                var resolved = TorchDevices.Resolve(parse.GetValue(device)!);
                int size = parse.GetValue(imageSize) ?? run?.Options.Augmentation.ImageSize ?? 224;
                var pair = DatasetFactory.Open(parse.GetValue(dataset) ?? run?.Settings.Dataset ?? "synthetic", parse.GetValue(data) ?? run?.Settings.Data, size, run?.Settings.MaxImages ?? 0);
                var modelOptions = new ModelOptions
                {
                    Arch = parse.GetValue(arch) ?? run?.Options.Model.Arch ?? "resnet50",
                    Dim = parse.GetValue(dim) ?? run?.Options.Model.Dim ?? 128,
                    Mlp = run?.Options.Model.Mlp ?? true,
                    BatchNormSplits = run?.Options.Model.BatchNormSplits ?? 1,
                };
                var backbone = new ResNetOptions
                {
                    Arch = modelOptions.Arch,
                    BaseWidth = parse.GetValue(width) ?? run?.Settings.Width ?? 64,
                    SmallImageStem = parse.GetValue(smallStem) ?? run?.Settings.SmallStem ?? false,
                };
                using var model = new HcscModel(modelOptions, () => ResNet.Create(backbone));
                // The checkpoint holds the optimiser's state too; a throwaway SGD of the run's settings reads past it.
                var training = run?.Options.Training ?? new TrainingOptions();
                using var optimizer = optim.SGD(model.TrainableParameters(), training.ScaledLearningRate, training.SgdMomentum, weight_decay: training.WeightDecay);
                var contents = TrainingCheckpoint.Load(file.FullName, model, optimizer);
                foreach (var tensor in contents.ExtraTensors.Values)
                {
                    tensor.Dispose();
                }

                model.to(resolved);
                int[] kValues = parse.GetValue(ks)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(k => int.Parse(k, CultureInfo.InvariantCulture)).ToArray();
                var accuracies = ModelEvaluation.Knn(model, pair, size, parse.GetValue(batch), parse.GetValue(workers), resolved, kValues);
                Console.WriteLine($"kNN on {pair.Validation.Description} against {pair.Train.Description} (checkpoint epoch {contents.Epoch}):");
                foreach (var a in accuracies)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  k = {a.K,4}: top-1 {a.Top1:F2} %, top-5 {a.Top5:F2} %"));
                }

                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InvalidDataException or FormatException or Hcsc.Models.Checkpoints.StateDictMismatchException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}
