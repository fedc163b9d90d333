using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Checkpoints;
using Hcsc.Core.Queue;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

public sealed class TrainingCheckpointTests : IDisposable
{
    private readonly string directory = Directory.CreateTempSubdirectory("hcsc-ckpt-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    private static HcscModel NewModel() =>
        new(new ModelOptions { Dim = 8, BatchNormSplits = 2, EncoderMomentum = 0.9 },
            () => ResNet.Create(new ResNetOptions { Arch = "resnet18", BaseWidth = 4, SmallImageStem = true }));

    private static void Step(HcscModel model, TorchSharp.Modules.SGD optimizer, Tensor x1, Tensor x2)
    {
        using var scope = NewDisposeScope();
        var (q, k) = model.Forward(x1, x2, new Generator(3));
        optimizer.zero_grad();
        (1 - (q * k).sum(1)).mean().backward();
        optimizer.step();
    }

    [Fact]
    public void Round_trip_restores_model_optimizer_queue_epoch_and_extras()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var x1 = randn(4, 3, 8, 8);
        var x2 = randn(4, 3, 8, 8);
        using var model = NewModel();
        model.train();
        var optimizer = optim.SGD(model.TrainableParameters(), 0.1, momentum: 0.9, weight_decay: 1e-4);
        Step(model, optimizer, x1, x2);
        using var queue = new KeyQueue(6, 8);
        queue.Enqueue(nn.functional.normalize(randn(4, 8), dim: 1), tensor(new long[] { 3, 1, 4, 1 }));
        var path = Path.Combine(directory, "checkpoint.bin");
        TrainingCheckpoint.Save(path, 7, model, optimizer, queue,
            new Dictionary<string, Tensor> { ["rng"] = new Generator(9).get_state(), ["assignments"] = tensor(new long[] { 2, 0, 1 }) },
            new Dictionary<string, string> { ["arch"] = "resnet18" });
        Directory.GetFiles(directory).Should().Equal(path);   // no temporary file left behind

        manual_seed(2);
        using var restored = NewModel();
        restored.train();
        var restoredOptimizer = optim.SGD(restored.TrainableParameters(), 0.1, momentum: 0.9, weight_decay: 1e-4);
        using var restoredQueue = new KeyQueue(6, 8);
        var contents = TrainingCheckpoint.Load(path, restored, restoredOptimizer, restoredQueue);

        contents.Epoch.Should().Be(7);
        contents.Metadata["arch"].Should().Be("resnet18");
        contents.ExtraTensors["assignments"].data<long>().ToArray().Should().Equal(2, 0, 1);
        contents.ExtraTensors["rng"].allclose(new Generator(9).get_state()).Should().BeTrue();
        foreach (var (name, t) in model.state_dict())
        {
            restored.state_dict()[name].allclose(t, rtol: 0, atol: 0).Should().BeTrue(name);
        }

        restoredQueue.Pointer.Should().Be(4);
        restoredQueue.Keys.allclose(queue.Keys, rtol: 0, atol: 0).Should().BeTrue();
        restoredQueue.Indices.data<long>().ToArray().Should().Equal(3, 1, 4, 1, -1, -1);

        // The optimiser's momentum buffers came back: one more step is identical on both.
        Step(model, optimizer, x1, x2);
        Step(restored, restoredOptimizer, x1, x2);
        foreach (var (name, t) in model.QueryEncoder.state_dict())
        {
            ModelFixtures.MaxAbsDiff(restored.QueryEncoder.state_dict()[name].to(float32), t.to(float32)).Should().BeLessThan(1e-6, name);
        }
    }

    [Fact]
    public void Saving_again_replaces_the_file_and_bad_files_are_refused()
    {
        using var model = NewModel();
        var path = Path.Combine(directory, "c.bin");
        TrainingCheckpoint.Save(path, 1, model);
        TrainingCheckpoint.Save(path, 2, model);
        TrainingCheckpoint.Load(path, model).Epoch.Should().Be(2);
        Directory.GetFiles(directory).Should().Equal(path);

        File.WriteAllText(path, "not a checkpoint");
        FluentActions.Invoking(() => TrainingCheckpoint.Load(path, model)).Should().Throw<InvalidDataException>();

        TrainingCheckpoint.Save(path, 3, model);
        using var other = new HcscModel(new ModelOptions { Dim = 16 }, () => ResNet.Create(new ResNetOptions { Arch = "resnet18", BaseWidth = 4, SmallImageStem = true }));
        FluentActions.Invoking(() => TrainingCheckpoint.Load(path, other)).Should().Throw<StateDictMismatchException>().WithMessage("*encoder_q.fc.2.weight: [8, 32] in the file, [16, 32] in the module*");
        using var queue = new KeyQueue(4, 8);
        FluentActions.Invoking(() => TrainingCheckpoint.Load(path, model, queue: queue)).Should().Throw<InvalidDataException>().WithMessage("*no key queue*");
    }

    [Fact]
    public void Truncated_corrupted_and_empty_files_are_named_and_never_half_loaded()
    {
        using var model = NewModel();
        var path = Path.Combine(directory, "good.hcsc");
        TrainingCheckpoint.Save(path, 4, model);
        TrainingCheckpoint.Verify(path);
        byte[] good = File.ReadAllBytes(path);

        var truncated = Path.Combine(directory, "truncated.hcsc");
        File.WriteAllBytes(truncated, good[..(good.Length * 2 / 3)]);
        FluentActions.Invoking(() => TrainingCheckpoint.Verify(truncated)).Should().Throw<InvalidDataException>().WithMessage("*truncated.hcsc' is truncated*");

        var corrupted = Path.Combine(directory, "corrupted.hcsc");
        byte[] flipped = (byte[])good.Clone();
        flipped[good.Length / 2] ^= 0x40;
        File.WriteAllBytes(corrupted, flipped);
        using var target = NewModel();
        var before = target.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        FluentActions.Invoking(() => TrainingCheckpoint.Load(corrupted, target)).Should().Throw<InvalidDataException>().WithMessage("*corrupted.hcsc' is corrupted: its SHA-256 does not match*");
        foreach (var (name, tensor) in target.state_dict())
        {
            tensor.allclose(before[name], rtol: 0, atol: 0).Should().BeTrue($"{name} is untouched by a refused file");
        }

        var empty = Path.Combine(directory, "empty.hcsc");
        File.WriteAllBytes(empty, []);
        FluentActions.Invoking(() => TrainingCheckpoint.Load(empty, target)).Should().Throw<InvalidDataException>().WithMessage("*empty.hcsc' is not an Hcsc training checkpoint*empty or truncated*");
        TrainingCheckpoint.Load(path, target).Epoch.Should().Be(4);
    }
}
