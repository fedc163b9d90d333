using System.CommandLine;
using Hcsc.Core.Devices;
using Hcsc.Samples.ImageNetPretrain.Training;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary><c>gpu-check</c>: the first command to run on a GPU machine (<see cref="DeviceCheck"/>); exit 0 when every check passed.</summary>
public static class GpuCheckCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var command = new Command("gpu-check", "Check a device before training on it: backend, preflight, one step against float64 on the CPU, and throughput (images/s).");
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or cuda:N", DefaultValueFactory = _ => "auto" };
        var arch = new Option<string>("--arch") { Description = "Backbone of the throughput measurement", DefaultValueFactory = _ => "resnet50" };
        var width = new Option<int>("--width") { Description = "ResNet base width of the throughput measurement", DefaultValueFactory = _ => 64 };
        var imageSize = new Option<int>("--image-size") { Description = "Image side of the throughput measurement", DefaultValueFactory = _ => 224 };
        var batch = new Option<int>("--batch-size") { Description = "Images per step of the throughput measurement", DefaultValueFactory = _ => 64 };
        var steps = new Option<int>("--steps") { Description = "Timed steps", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup-steps") { Description = "Untimed steps before them", DefaultValueFactory = _ => 5 };
        var tf32 = new Option<bool>("--tf32") { Description = "TF32 during the throughput measurement (Ampere and newer)" };
        foreach (var option in new Option[] { device, arch, width, imageSize, batch, steps, warmup, tf32 })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse =>
        {
            if (parse.GetValue(steps) < 1 || parse.GetValue(warmup) < 0 || parse.GetValue(batch) < 2 || parse.GetValue(imageSize) < 16 || parse.GetValue(width) < 1)
            {
                Console.Error.WriteLine("error: --steps must be >= 1, --warmup-steps >= 0, --batch-size >= 2, --image-size >= 16 and --width >= 1.");
                return 2;
            }

            TorchSharp.torch.Device resolved;
            try
            {
                resolved = TorchDevices.Resolve(parse.GetValue(device)!);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }

            var settings = new DeviceCheckSettings
            {
                Device = resolved,
                Arch = parse.GetValue(arch)!,
                Width = parse.GetValue(width),
                ImageSize = parse.GetValue(imageSize),
                BatchSize = parse.GetValue(batch),
                Steps = parse.GetValue(steps),
                WarmupSteps = parse.GetValue(warmup),
                Tf32 = parse.GetValue(tf32),
            };
            return DeviceCheck.Run(settings, Console.Out) ? 0 : 1;
        });
        return command;
    }
}
