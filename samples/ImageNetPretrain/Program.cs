using System.Text.Json;
using System.Text.Json.Serialization;
using Hcsc.Core.Devices;
using Hcsc.Core.Options;
using Hcsc.Core.Randomness;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using TorchSharp;
using static TorchSharp.torch;

// Configuration: defaults, then an optional JSON file (--config file.json), then the command
// line, e.g. --Hcsc:Training:Device=cpu --Hcsc:Model:QueueLength=4096.
string? configFile = args.SkipWhile(a => a != "--config").Skip(1).FirstOrDefault();
string[] overrides = configFile is null ? args : args.Where((a, i) => a != "--config" && (i == 0 || args[i - 1] != "--config")).ToArray();
var builder = new ConfigurationBuilder();
if (configFile is not null)
{
    builder.AddJsonFile(Path.GetFullPath(configFile), optional: false);
}

var configuration = builder.AddCommandLine(overrides).Build();
using var services = new ServiceCollection().AddHcscOptions(configuration.GetSection(HcscOptions.SectionName)).BuildServiceProvider();

HcscOptions options;
try
{
    options = services.GetRequiredService<IOptions<HcscOptions>>().Value;
}
catch (OptionsValidationException e)
{
    Console.Error.WriteLine("The configuration is invalid:");
    foreach (string failure in e.Failures)
    {
        Console.Error.WriteLine($"  - {failure}");
    }

    return 2;
}
catch (InvalidOperationException e)
{
    Console.Error.WriteLine($"The configuration could not be read: {e.Message}");
    return 2;
}

var json = new JsonSerializerOptions { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };
Console.WriteLine("Configuration (validated):");
Console.WriteLine(JsonSerializer.Serialize(options, json));

Device device;
try
{
    device = TorchDevices.Resolve(options.Training.Device);
}
catch (Exception e) when (e is ArgumentException or InvalidOperationException)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}

Console.WriteLine($"Device: {device} (TorchSharp {typeof(torch).Assembly.GetName().Version}, {torch.get_num_threads()} threads)");

using var random = RandomSources.SeedEverything(options.Training.Seed);
using (var scope = NewDisposeScope())
{
    // A small convolutional encoder, to show the backend computes; later stages run the full pipeline.
    var encoder = nn.Sequential(
        ("conv", nn.Conv2d(3, 16, 3, padding: 1)),
        ("bn", nn.BatchNorm2d(16)),
        ("relu", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("head", nn.Linear(16, options.Model.Dim))).to(device);
    encoder.eval();
    using var noGrad = no_grad();
    var images = randn([4, 3, 32, 32], generator: random.Generator).to(device);
    var embeddings = nn.functional.normalize(encoder.forward(images), dim: 1);
    var norms = embeddings.norm(1).cpu().data<float>().ToArray();
    Console.WriteLine($"Forward pass: input [{string.Join(", ", images.shape)}] -> embeddings [{string.Join(", ", embeddings.shape)}], " +
                      $"row norms {string.Join(", ", norms.Select(n => n.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}");
}

return 0;
