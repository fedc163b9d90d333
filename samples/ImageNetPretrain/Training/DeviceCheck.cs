using System.Diagnostics;
using System.Globalization;
using Hcsc.Core.Options;
using Hcsc.Runtime;
using Hcsc.Losses;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Optimization;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>What <see cref="DeviceCheck.Run"/> measures: the throughput model's shape and the step counts.</summary>
public sealed record DeviceCheckSettings
{
    /// <summary>The device to check.</summary>
    public required Device Device { get; init; }

    /// <summary>Backbone of the throughput measurement (default ResNet-50, the paper's).</summary>
    public string Arch { get; init; } = "resnet50";

    /// <summary>Base width of the throughput backbone.</summary>
    public int Width { get; init; } = 64;

    /// <summary>Image side of the throughput measurement.</summary>
    public int ImageSize { get; init; } = 224;

    /// <summary>Images per step of the throughput measurement.</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Timed steps.</summary>
    public int Steps { get; init; } = 50;

    /// <summary>Untimed steps first (allocator, cuDNN's algorithm search).</summary>
    public int WarmupSteps { get; init; } = 5;

    /// <summary>TF32 during the throughput measurement (the parity check always runs without).</summary>
    public bool Tf32 { get; init; }
}

/// <summary>
/// The checks a user runs first on a GPU machine (<c>gpu-check</c>): the device and backend; the <see cref="Preflight"/>;
/// one training step on the device against the same step in float64 on the CPU; and a throughput measurement of MoCo
/// training steps (images/s). Prints one line per check and PASS or FAIL.
/// </summary>
public static class DeviceCheck
{
    // The parity model: a width-8 ResNet-18 with the small stem on 32-px images. Its largest reduction is a 3×3
    // convolution over 64 channels (576 products) in 20 layers; a float32 forward then errs by at most
    // 20 · (576 + 16) · 2⁻²⁴ ≈ 7e-4 relative to its O(1) activations, and the backward pass adds as much again.
    private const double ParityTolerance = 2 * 20 * (576 + 16) / 16777216.0;

    /// <summary>Runs every check and writes what it found to <paramref name="output"/>; true when all passed.</summary>
    public static bool Run(DeviceCheckSettings settings, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(output);
        var device = settings.Device;
        Describe(device, output);
        bool passed = true;
        passed &= Stage(output, "preflight (k-means, an HCSC step with selection, a checkpoint round trip)", () =>
        {
            double seconds = Preflight.Run(device, new ObjectiveOptions(), Path.GetTempPath());
            return string.Create(CultureInfo.InvariantCulture, $"{seconds:F1} s");
        });
        passed &= Stage(output, "one training step against float64 on the CPU", () => Parity(device));
        passed &= Stage(output, $"throughput: {settings.Arch} (width {settings.Width}), {settings.ImageSize} px, batch {settings.BatchSize}, {settings.Steps} steps", () => Throughput(settings));
        output.WriteLine(passed ? "gpu-check: PASS" : "gpu-check: FAIL");
        return passed;
    }

    private static void Describe(Device device, TextWriter output)
    {
        output.WriteLine($"device: {device}; TorchSharp {typeof(torch).Assembly.GetName().Version}; CUDA available: {cuda.is_available()}, {(cuda.is_available() ? cuda.device_count() : 0)} device(s); cuDNN available: {cuda.is_available() && cuda.is_cudnn_available()}");
        output.WriteLine($"torch threads: {get_num_threads()}; cuDNN benchmark: {CudaSwitches.CudnnBenchmark?.ToString() ?? "not reachable"}; TF32: {CudaSwitches.Tf32}");
        if (device.type == DeviceType.CUDA)
        {
            output.WriteLine($"nvidia-smi: {NvidiaSmi("--query-gpu=index,name,memory.total,driver_version --format=csv,noheader") ?? "not found"}");
        }
    }

    private static bool Stage(TextWriter output, string name, Func<string> check)
    {
        try
        {
            output.WriteLine($"ok    {name}: {check()}");
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            output.WriteLine($"FAIL  {name}: {e.Message.Split('\n')[0].Trim()}");
            return false;
        }
    }

    // The same weights, inputs, shuffle and queue in float32 on the device and in float64 on the CPU: one MoCo step's
    // loss and query-encoder gradients. TF32 is off while it runs.
    private static string Parity(Device device)
    {
        bool tf32 = CudaSwitches.Tf32;
        using var scope = NewDisposeScope();
        try
        {
            if (device.type == DeviceType.CUDA)
            {
                CudaSwitches.Apply(CudaSwitches.CudnnBenchmark ?? false, tf32: false);
            }

            var (loss32, gradients32) = ParityStep(device, ScalarType.Float32);
            var (loss64, gradients64) = ParityStep(CPU, ScalarType.Float64);
            double lossError = Math.Abs(loss32 - loss64) / Math.Abs(loss64);
            double scale = gradients64.Values.Max(g => g.abs().max().item<double>());
            double gradientError = gradients64.Max(p => (gradients32[p.Key].to(ScalarType.Float64, CPU) - p.Value).abs().max().item<double>()) / scale;
            string figures = string.Create(CultureInfo.InvariantCulture, $"loss {loss32:G6} vs {loss64:G6} (relative {lossError:E1}), gradients {gradientError:E1} of the largest; bound {ParityTolerance:E1}");
            return lossError <= ParityTolerance && gradientError <= ParityTolerance
                ? figures
                : throw new InvalidOperationException($"beyond float32's bound: {figures}");
        }
        finally
        {
            if (device.type == DeviceType.CUDA)
            {
                CudaSwitches.Apply(CudaSwitches.CudnnBenchmark ?? false, tf32);
            }
        }
    }

    private static (double Loss, Dictionary<string, Tensor> Gradients) ParityStep(Device device, ScalarType dtype)
    {
        random.manual_seed(7);
        using var model = new HcscModel(
            new ModelOptions { Arch = "resnet18", Dim = 16, QueueLength = 64, BatchNormSplits = 2, EncoderMomentum = 0.99 },
            () => ResNet.Create(new ResNetOptions { Arch = "resnet18", SmallImageStem = true, BaseWidth = 8 }));
        model.to(dtype).to(device);
        model.train();
        using var inputs = new Generator(8);
        var view1 = randn([8, 3, 32, 32], generator: inputs).to(dtype).to(device);
        var view2 = randn([8, 3, 32, 32], generator: inputs).to(dtype).to(device);
        var queue = nn.functional.normalize(randn([64, 16], generator: inputs), dim: 1).to(dtype).to(device);
        var indices = tensor(new long[] { 0, 1, 2, 3, 4, 5, 6, 7 }).to(device);
        using var shuffle = new Generator(9);
        var (q, k) = model.Forward(view1, view2, shuffle);
        using var objective = new HcscObjective();
        using var masks = new Generator(10);
        var result = objective.Compute(q, k, queue, indices, hierarchy: null, masks);
        result.Backward();
        var gradients = model.QueryEncoder.named_parameters()
            .Where(p => p.parameter.grad is not null)
            .ToDictionary(p => p.name, p => p.parameter.grad!.detach().to(ScalarType.Float64, CPU).MoveToOuterDisposeScope());
        return (result.Total.to(ScalarType.Float64).item<double>(), gradients);
    }

    // MoCo steps of the full-size model on random images: forward both encoders, InfoNCE against a queue of 16 384,
    // backward, SGD, enqueue. Synchronised before and after the timed steps on CUDA.
    private static string Throughput(DeviceCheckSettings settings)
    {
        var device = settings.Device;
        bool tf32 = CudaSwitches.Tf32;
        try
        {
            if (device.type == DeviceType.CUDA)
            {
                CudaSwitches.Apply(CudaSwitches.CudnnBenchmark ?? true, settings.Tf32);
            }

            random.manual_seed(11);
            using var model = new HcscModel(
                new ModelOptions { Arch = settings.Arch, Dim = 128, QueueLength = 16384, BatchNormSplits = 8 },
                () => ResNet.Create(new ResNetOptions { Arch = settings.Arch, BaseWidth = settings.Width, SmallImageStem = settings.ImageSize < 64 }));
            model.to(device);
            model.train();
            using var queue = new SelectiveKeyQueue(16384, 128, device);
            using var objective = new HcscObjective();
            using var optimizer = new ExplicitScalarSgd(model.PackParameters(), 0.03, 0.9, weightDecay: 1e-4);
            using var generator = new Generator(12);
            using var indices = tensor(Enumerable.Range(0, settings.BatchSize).Select(i => (long)i).ToArray()).to(device);
            var clock = new Stopwatch();
            for (int step = 0; step < settings.WarmupSteps + settings.Steps; step++)
            {
                if (step == settings.WarmupSteps)
                {
                    Synchronise(device);
                    clock.Start();
                }

                using var scope = NewDisposeScope();
                var view1 = randn([settings.BatchSize, 3, settings.ImageSize, settings.ImageSize], device: device);
                var view2 = randn([settings.BatchSize, 3, settings.ImageSize, settings.ImageSize], device: device);
                var (q, k) = model.Forward(view1, view2, generator);
                var loss = objective.Compute(q, k, queue, indices, hierarchy: null, generator);
                optimizer.zero_grad();
                loss.Backward();
                optimizer.step();
                queue.Enqueue(k, indices);
            }

            Synchronise(device);
            clock.Stop();
            double imagesPerSecond = settings.BatchSize * (double)settings.Steps / clock.Elapsed.TotalSeconds;
            string memory = device.type == DeviceType.CUDA
                ? $"; device memory in use (nvidia-smi, the caching allocator's peak or more): {NvidiaSmi($"--query-gpu=memory.used --format=csv,noheader --id={device.index}") ?? "not measured (nvidia-smi not found)"}"
                : string.Empty;
            return string.Create(CultureInfo.InvariantCulture, $"{imagesPerSecond:F1} images/s ({1000 * clock.Elapsed.TotalSeconds / settings.Steps:F0} ms a step){memory}");
        }
        finally
        {
            if (device.type == DeviceType.CUDA)
            {
                CudaSwitches.Apply(CudaSwitches.CudnnBenchmark ?? true, tf32);
            }
        }
    }

    private static void Synchronise(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            cuda.synchronize(device);
        }
    }

    private static string? NvidiaSmi(string arguments)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("nvidia-smi", arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false });
            if (process is null)
            {
                return null;
            }

            string text = process.StandardOutput.ReadToEnd().Trim();
            process.WaitForExit(10_000);
            return process.ExitCode == 0 && text.Length > 0 ? text.ReplaceLineEndings("; ") : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
