using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Checkpoints;
using Hcsc.Models.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

public class FlatParametersTests
{
    private const int Batch = 4;
    private const int ImageSize = 8;

    [Fact]
    public void Packing_keeps_the_values_and_makes_every_parameter_and_gradient_a_view_of_the_buffers()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("a", nn.Linear(3, 5)), ("b", nn.Linear(5, 2)));
        var before = model.parameters().Select(p => p.data<float>().ToArray()).ToList();
        using var packed = FlatParameters.Pack(model.named_parameters(), packGradients: true);

        packed.Count.Should().Be((3 * 5) + 5 + (5 * 2) + 2);
        packed.Names.Should().Equal("a.weight", "a.bias", "b.weight", "b.bias");
        model.parameters().Select(p => p.data<float>().ToArray()).Should().BeEquivalentTo(before, o => o.WithStrictOrdering());
        packed.Values.data<float>().ToArray().Should().Equal(before.SelectMany(v => v), "the slices follow the parameters' order");

        using (no_grad())
        {
            packed.Values[15].fill_(42f); // the first element of a.bias
        }

        model.named_parameters().Single(p => p.name == "a.bias").parameter[0].item<float>().Should().Be(42f);

        model.call(ones(2, 3)).sum().backward();
        var gradients = model.parameters().Select(p => p.grad!.data<float>().ToArray()).SelectMany(g => g).ToArray();
        packed.Gradients!.data<float>().ToArray().Should().Equal(gradients, "autograd accumulated into the packed gradients");
        gradients.Should().Contain(g => g != 0f);

        packed.ZeroGradients();
        model.parameters().Should().AllSatisfy(p => p.grad!.abs().sum().item<float>().Should().Be(0f));
    }

    [Fact]
    public void Parameters_of_two_dtypes_are_refused_with_both_named()
    {
        using var scope = NewDisposeScope();
        var first = new Parameter(zeros(3));
        var second = new Parameter(zeros(3, ScalarType.Float64));
        var act = () => FlatParameters.Pack([("first", first), ("second", second)], packGradients: false);
        act.Should().Throw<ArgumentException>().WithMessage("One buffer holds one dtype on one device: 'second' is Float64 on cpu, 'first' Float32 on cpu.*");
    }

    [Fact]
    public void Packed_training_steps_equal_the_per_parameter_loops_bit_for_bit()
    {
        using var scope = NewDisposeScope();
        using var loose = Model();
        using var packed = Model();
        using var looseSgd = new ExplicitScalarSgd(loose.TrainableParameters(), 0.3, momentum: 0.9, weightDecay: 1e-4);
        using var packedSgd = new ExplicitScalarSgd(packed.PackParameters(), 0.3, momentum: 0.9, weightDecay: 1e-4);
        for (int step = 0; step < 4; step++)
        {
            Step(loose, looseSgd, step);
            Step(packed, packedSgd, step);
        }

        // The SGD step (query encoder) and the EMA (key encoder) are elementwise: every element meets the same rounded operations.
        BitsOf(packed).Should().Equal(BitsOf(loose));
    }

    [Fact]
    public void Packed_momentum_is_saved_and_resumed_into_packed_and_loose_optimisers_identically()
    {
        using var scope = NewDisposeScope();
        using var reference = Model();
        using var referenceSgd = new ExplicitScalarSgd(reference.PackParameters(), 0.3, momentum: 0.9, weightDecay: 1e-4);
        for (int step = 0; step < 2; step++)
        {
            Step(reference, referenceSgd, step);
        }

        string saved = Path.Combine(Directory.CreateTempSubdirectory("hcsc-flat-").FullName, "checkpoint.pth");
        TrainingCheckpoint.Save(saved, 2, reference, referenceSgd);
        using var packed = Model();
        using var loose = Model();
        using var packedSgd = new ExplicitScalarSgd(packed.PackParameters(), 0.3, momentum: 0.9, weightDecay: 1e-4);
        using var looseSgd = new ExplicitScalarSgd(loose.TrainableParameters(), 0.3, momentum: 0.9, weightDecay: 1e-4);
        foreach (var (model, optimizer) in new[] { (packed, (OptimizerHelper)packedSgd), (loose, looseSgd) })
        {
            TrainingCheckpoint.Load(saved, model, optimizer);
        }

        for (int step = 2; step < 4; step++)
        {
            Step(reference, referenceSgd, step);
            Step(packed, packedSgd, step);
            Step(loose, looseSgd, step);
        }

        BitsOf(packed).Should().Equal(BitsOf(reference), "the momentum loaded into a fresh packed optimiser was gathered into its flat buffer");
        BitsOf(loose).Should().Equal(BitsOf(reference), "the packed optimiser saves its momentum in the per-parameter format");
        Directory.Delete(Path.GetDirectoryName(saved)!, recursive: true);
    }

    [Fact]
    public void Moving_a_packed_model_is_refused_with_what_to_do()
    {
        using var scope = NewDisposeScope();
        using var model = Model();
        model.PackParameters();
        var act = () => model.to(ScalarType.Float64);
        act.Should().Throw<InvalidOperationException>().WithMessage("*packed on cpu as Float32 (PackParameters)*Move the model first, then pack.");
    }

    private static HcscModel Model()
    {
        using var random = new Generator(7);
        torch.manual_seed(7);
        var model = new HcscModel(
            new ModelOptions { Dim = 8, QueueLength = 16, BatchNormSplits = 2, EncoderMomentum = 0.9 },
            () => ResNet.Create(new ResNetOptions { Arch = "resnet18", SmallImageStem = true, BaseWidth = 4 }));
        model.train();
        return model;
    }

    // A loss with gradients in every query parameter: the queries against fixed directions, and the keys updated by EMA.
    private static void Step(HcscModel model, ExplicitScalarSgd optimizer, int step)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)(100 + step));
        var view1 = randn([Batch, 3, ImageSize, ImageSize], generator: generator);
        var view2 = randn([Batch, 3, ImageSize, ImageSize], generator: generator);
        var directions = randn([Batch, 8], generator: generator);
        var (q, k) = model.Forward(view1, view2, generator);
        optimizer.zero_grad();
        (q * directions).sum().add(k.sum().detach()).backward();
        optimizer.step();
    }

    private static int[] BitsOf(HcscModel model) =>
        model.parameters().SelectMany(p => p.data<float>().ToArray()).Select(BitConverter.SingleToInt32Bits).ToArray();
}
