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

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary><c>knn</c>: weighted kNN evaluation (spec §5) of a pretraining checkpoint's backbone.</summary>
public static class KnnCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("knn", "Weighted kNN top-1/top-5 (k = 10, 20, 100, 200; T = 0.07) of a checkpoint's backbone features.");
        var checkpoint = new Option<FileInfo>("--checkpoint") { Description = "A checkpoint written by pretrain", Required = true };
        var dataset = new Option<string>("--dataset") { Description = $"Dataset: {string.Join(", ", DatasetFactory.Names)}", DefaultValueFactory = _ => "synthetic" };
        var data = new Option<string?>("--data") { Description = "Data folder (as for pretrain)" };
        var arch = new Option<string>("--arch", "-a") { Description = "Backbone of the checkpoint", DefaultValueFactory = _ => "resnet18" };
        var dim = new Option<int>("--dim") { Description = "Embedding size of the checkpoint", DefaultValueFactory = _ => 64 };
        var width = new Option<int>("--width") { Description = "ResNet base width of the checkpoint", DefaultValueFactory = _ => 16 };
        var smallStem = new Option<bool>("--small-stem") { Description = "Small-image stem", DefaultValueFactory = _ => true };
        var imageSize = new Option<int>("--image-size") { Description = "Evaluation crop size", DefaultValueFactory = _ => 32 };
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
                var resolved = TorchDevices.Resolve(parse.GetValue(device)!);
                var pair = DatasetFactory.Open(parse.GetValue(dataset)!, parse.GetValue(data), parse.GetValue(imageSize));
                var modelOptions = new ModelOptions { Arch = parse.GetValue(arch)!, Dim = parse.GetValue(dim), BatchNormSplits = 1 };
                using var model = new HcscModel(modelOptions, () => ResNet.Create(new ResNetOptions { Arch = modelOptions.Arch, BaseWidth = parse.GetValue(width), SmallImageStem = parse.GetValue(smallStem) }));
                var contents = TrainingCheckpoint.Load(parse.GetValue(checkpoint)!.FullName, model);
                foreach (var tensor in contents.ExtraTensors.Values)
                {
                    tensor.Dispose();
                }

                model.to(resolved);
                int[] kValues = parse.GetValue(ks)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(k => int.Parse(k, CultureInfo.InvariantCulture)).ToArray();
                var accuracies = ModelEvaluation.Knn(model, pair, parse.GetValue(imageSize), parse.GetValue(batch), parse.GetValue(workers), resolved, kValues);
                Console.WriteLine($"kNN on {pair.Validation.Description} against {pair.Train.Description} (checkpoint epoch {contents.Epoch}):");
                foreach (var a in accuracies)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  k = {a.K,4}: top-1 {a.Top1:F2} %, top-5 {a.Top5:F2} %"));
                }

                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InvalidDataException or FormatException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }
}
