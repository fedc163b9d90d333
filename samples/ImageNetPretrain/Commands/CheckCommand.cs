using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Hcsc.Core.Devices;
using Hcsc.Core.Randomness;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Commands;

/// <summary>
/// <c>check</c>: prints the validated configuration and the device, and runs one forward pass of a
/// small network to show the TorchSharp backend computes. A quick test of an installation.
/// </summary>
public static class CheckCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var root = new Command("check", "Print the validated configuration and the device, and run one forward pass.");
        var config = new Option<FileInfo?>("--config") { Description = "JSON file with an \"Hcsc\" section of options." };
        var set = new Option<string[]>("--set") { Description = "Override one option, e.g. --set Model:QueueLength=4096 (repeatable).", AllowMultipleArgumentsPerToken = true };
        var device = new Option<string?>("--device") { Description = "auto, cpu, cuda or cuda:N (overrides Training:Device)." };
        root.Options.Add(config);
        root.Options.Add(set);
        root.Options.Add(device);
        root.SetAction(parse =>
        {
            var overrides = SettingParser.Parse(parse.GetValue(set) ?? [], Console.Error);
            if (overrides is null)
            {
                return 2;
            }

            if (parse.GetValue(device) is { } deviceSpec)
            {
                overrides["Training:Device"] = deviceSpec;
            }

            var options = HcscOptionsLoader.Load(preset: null, parse.GetValue(config), overrides, Console.Error);
            if (options is null)
            {
                return 2;
            }

            var json = new JsonSerializerOptions { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };
            Console.WriteLine("Configuration (validated):");
            Console.WriteLine(JsonSerializer.Serialize(options, json));

            Device resolved;
            try
            {
                resolved = TorchDevices.Resolve(options.Training.Device);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }

            Console.WriteLine($"Device: {resolved} (TorchSharp {typeof(torch).Assembly.GetName().Version}, {get_num_threads()} threads)");
            using var random = RandomSources.SeedEverything(options.Training.Seed);
            using var scope = NewDisposeScope();
            var encoder = nn.Sequential(
                ("conv", nn.Conv2d(3, 16, 3, padding: 1)),
                ("bn", nn.BatchNorm2d(16)),
                ("relu", nn.ReLU()),
                ("pool", nn.AdaptiveAvgPool2d(1)),
                ("flatten", nn.Flatten()),
                ("head", nn.Linear(16, options.Model.Dim))).to(resolved);
            encoder.eval();
            using var noGrad = no_grad();
            var images = randn([4, 3, 32, 32], generator: random.Generator).to(resolved);
            var embeddings = nn.functional.normalize(encoder.forward(images), dim: 1);
            var norms = embeddings.norm(1).cpu().data<float>().ToArray();
            Console.WriteLine(
                $"Forward pass: input [{string.Join(", ", images.shape)}] -> embeddings [{string.Join(", ", embeddings.shape)}], " +
                $"row norms {string.Join(", ", norms.Select(n => n.ToString("F4", CultureInfo.InvariantCulture)))}");
            return 0;
        });
        return root;
    }
}
