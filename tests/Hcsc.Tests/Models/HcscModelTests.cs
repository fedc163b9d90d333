using Hcsc.Core.Options;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

public class HcscModelTests
{
    private static ResNetOptions Tiny => new() { Arch = "resnet18", BaseWidth = 4, SmallImageStem = true, InputChannels = 3 };

    private static HcscModel Create(int splits = 2, double momentum = 0.5, bool mlp = true, int dim = 8) =>
        new(new ModelOptions { Dim = dim, Mlp = mlp, EncoderMomentum = momentum, BatchNormSplits = splits }, () => ResNet.Create(Tiny));

    [Fact]
    public void Names_are_mocos()
    {
        using var model = Create();
        var keys = model.state_dict().Keys.ToList();
        keys.Should().Contain(["encoder_q.conv1.weight", "encoder_q.fc.0.weight", "encoder_q.fc.2.bias", "encoder_k.layer4.1.bn2.running_var", "encoder_k.fc.2.weight"]);
        keys.Should().NotContain(k => k.StartsWith("encoder_q.fc.weight"));
        using var single = Create(mlp: false);
        single.state_dict().Keys.Should().Contain(["encoder_q.fc.weight", "encoder_k.fc.bias"]);
    }

    [Fact]
    public void Forward_gives_unit_embeddings_with_gradient_only_for_queries()
    {
        using var scope = NewDisposeScope();
        using var model = Create();
        model.train();
        var (q, k) = model.Forward(randn(4, 3, 8, 8), randn(4, 3, 8, 8), new Generator(1));
        q.shape.Should().Equal(4, 8);
        k.shape.Should().Equal(4, 8);
        double unit = FloatBounds.Sum(2 * 8, 1, FloatBounds.Float32); // normalise, then the norm: two sums over d = 8
        q.norm(1).allclose(ones(4), rtol: 0, atol: unit).Should().BeTrue();
        k.norm(1).allclose(ones(4), rtol: 0, atol: unit).Should().BeTrue();
        q.requires_grad.Should().BeTrue();
        k.requires_grad.Should().BeFalse();

        (q * k).sum().backward();
        model.QueryEncoder.parameters().All(p => p.grad is not null).Should().BeTrue();
        model.KeyEncoder.parameters().All(p => p.grad is null && !p.requires_grad).Should().BeTrue();
        model.TrainableParameters().Should().HaveCount(model.QueryEncoder.parameters().Count());
    }

    [Fact]
    public void Ema_happens_inside_forward_before_the_keys()
    {
        using var scope = NewDisposeScope();
        using var model = Create(momentum: 0.75);
        using (no_grad())
        {
            // Make the encoders differ so the update is visible.
            foreach (var p in model.QueryEncoder.parameters())
            {
                p.add_(1.0);
            }
        }

        var queryBefore = model.QueryEncoder.state_dict()["fc.2.weight"].clone();
        var keyBefore = model.KeyEncoder.state_dict()["fc.2.weight"].clone();
        model.train();
        model.Forward(randn(2, 3, 8, 8), randn(2, 3, 8, 8));
        var expected = 0.75 * keyBefore + 0.25 * queryBefore;
        // Two products and a sum of values ≤ 2 in size, computed once here and once by the update.
        model.KeyEncoder.state_dict()["fc.2.weight"].allclose(expected, rtol: 0, atol: 2 * FloatBounds.Sum(2, 2, FloatBounds.Float32)).Should().BeTrue();
    }

    [Fact]
    public void Shuffled_split_bn_keys_equal_plain_bn_applied_per_shuffled_split()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        using var model = Create(splits: 2, momentum: 0.5);   // the keys come from the key encoder after its EMA update, the state copied below
        model.ShuffledKeyBatchNorm.Should().BeTrue();
        model.train();
        var view2 = randn(6, 3, 8, 8);
        var (_, k) = model.Forward(randn(6, 3, 8, 8), view2, new Generator(42));

        // Independently: the same permutation from the same seed; split j holds shuffled positions i with i mod 2 = j;
        // a plain-BN copy of the key encoder in training mode normalises each split on its own.
        var perm = randperm(6, generator: new Generator(42)).data<long>().ToArray();
        using var plain = ResNet.Create(Tiny);
        plain.ReplaceHead(Hcsc.Models.Heads.ProjectionHead.Create(plain.FeatureDim, 8, mlp: true));
        using (no_grad())
        {
            var source = model.KeyEncoder.state_dict();
            foreach (var (name, t) in plain.state_dict())
            {
                t.copy_(source[name]);
            }
        }

        plain.train();
        var expected = zeros(6, 8);
        using (no_grad())
        {
            for (var j = 0; j < 2; j++)
            {
                var members = new[] { perm[j], perm[j + 2], perm[j + 4] };
                var output = nn.functional.normalize(plain.forward(view2.index_select(0, tensor(members))), dim: 1);
                for (var r = 0; r < members.Length; r++)
                {
                    expected[members[r]] = output[r];
                }
            }
        }

        // Unit keys through a width-4 ResNet-18 (largest reduction 3×3×32, 20 layers) in batches of other sizes.
        ModelFixtures.MaxAbsDiff(k, expected).Should().BeLessThan(FloatBounds.Network(9 * 32, 20, 1));
    }

    [Fact]
    public void A_custom_norm_layer_keeps_the_factorys_key_encoder_without_shuffle()
    {
        using var scope = NewDisposeScope();
        var calls = 0;
        using var model = new HcscModel(
            new ModelOptions { Dim = 8, BatchNormSplits = 4 },
            () => { calls++; return ResNet.Create(Tiny with { NormLayer = c => nn.GroupNorm(2, c) }); });
        calls.Should().Be(2);
        model.ShuffledKeyBatchNorm.Should().BeFalse();
        model.train();
        var (_, k) = model.Forward(randn(3, 3, 8, 8), randn(3, 3, 8, 8));   // 3 is not a multiple of 4: no split BN here
        k.shape.Should().Equal(3, 8);
        model.KeyEncoder.state_dict()["bn1.weight"].allclose(model.QueryEncoder.state_dict()["bn1.weight"]).Should().BeTrue();
    }

    [Fact]
    public void Key_batch_must_be_a_multiple_of_the_splits_in_training()
    {
        using var scope = NewDisposeScope();
        using var model = Create(splits: 4);
        model.train();
        var act = () => model.Forward(randn(6, 3, 8, 8), randn(6, 3, 8, 8));
        act.Should().Throw<ArgumentException>().WithMessage("*multiple of 4*");
    }

    [Fact]
    public void Embed_uses_the_key_encoder_in_eval_mode_and_restores_the_mode()
    {
        using var scope = NewDisposeScope();
        using var model = Create(splits: 4);
        model.train();
        var images = randn(3, 3, 8, 8);   // 3 is not a multiple of 4: fine in eval mode
        var embeddings = model.Embed(images);
        embeddings.shape.Should().Equal(3, 8);
        embeddings.requires_grad.Should().BeFalse();
        model.KeyEncoder.training.Should().BeTrue();

        model.KeyEncoder.eval();
        using var noGrad = no_grad();
        var expected = nn.functional.normalize(model.KeyEncoder.forward(images), dim: 1);
        ModelFixtures.MaxAbsDiff(embeddings, expected).Should().BeLessThan(FloatBounds.Network(9 * 32, 20, 1));
    }

    [Fact]
    public void Backbone_features_and_local_views_have_the_right_shapes()
    {
        using var scope = NewDisposeScope();
        using var model = Create();
        model.train();
        var features = model.BackboneFeatures(randn(5, 3, 8, 8));
        features.shape.Should().Equal(5, 32);
        model.QueryEncoder.training.Should().BeTrue();

        var locals = model.ForwardLocal([randn(2, 3, 6, 6), randn(2, 3, 4, 4)]);
        locals.Should().HaveCount(2);
        locals.All(t => t.shape.SequenceEqual(new long[] { 2, 8 }) && t.requires_grad).Should().BeTrue();
    }

    [Fact]
    public void Training_steps_leave_no_tensor_behind()
    {
        using var model = Create(splits: 2);
        model.train();
        using var queue = new Hcsc.Core.Queue.KeyQueue(8, 8);
        using var optimizer = optim.SGD(model.TrainableParameters(), 0.1, momentum: 0.9);
        using var x1 = randn(4, 3, 8, 8);
        using var x2 = randn(4, 3, 8, 8);
        using var indices = arange(4);
        using var generator = new Generator(0);
        void Step()
        {
            using var scope = NewDisposeScope();
            var (q, k) = model.Forward(x1, x2, generator);
            var loss = -(q * k).sum(1).mean() + q.matmul(queue.Keys.t()).exp().sum(1).log().mean();
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            queue.Enqueue(k, indices);
        }

        Step();   // creates the gradients and momentum buffers
        var live = Tensor.TotalCount;
        Step();
        Step();
        Tensor.TotalCount.Should().Be(live);
    }

    [Fact]
    public void Invalid_options_are_listed_together()
    {
        var act = () => new HcscModel(new ModelOptions { Dim = 0, EncoderMomentum = 1.5, BatchNormSplits = 0 }, () => ResNet.Create(Tiny));
        act.Should().Throw<ArgumentException>().WithMessage("*Dim*EncoderMomentum*BatchNormSplits*");
    }
}
