using Hcsc.Core.Options;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Hcsc.Tests.Core;

public class HcscOptionsTests
{
    private static HcscOptions Bind(params string[] commandLine)
    {
        var configuration = new ConfigurationBuilder().AddCommandLine(commandLine).Build();
        using var services = new ServiceCollection().AddHcscOptions(configuration.GetSection(HcscOptions.SectionName)).BuildServiceProvider();
        return services.GetRequiredService<IOptions<HcscOptions>>().Value;
    }

    [Fact]
    public void AddHcsc_binds_the_Hcsc_section_and_validates_every_problem_at_start_up()
    {
        var valid = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Hcsc:Model:QueueLength"] = "4096",
            ["Hcsc:Clustering:NumClusters:0"] = "100",
            ["Hcsc:Clustering:NumClusters:1"] = "10",
        }).Build();
        using (var services = new ServiceCollection().AddHcsc(valid).BuildServiceProvider())
        {
            services.GetRequiredService<IStartupValidator>().Validate();
            var options = services.GetRequiredService<IOptions<HcscOptions>>().Value;
            options.Model.QueueLength.Should().Be(4096);
            options.Clustering.NumClusters.Should().Equal(100, 10);
        }

        var invalid = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Hcsc:Model:QueueLength"] = "0",
            ["Hcsc:Training:BatchSize"] = "-1",
        }).Build();
        using var broken = new ServiceCollection().AddHcsc(invalid).BuildServiceProvider();
        var act = () => broken.GetRequiredService<IStartupValidator>().Validate();
        var failures = act.Should().Throw<OptionsValidationException>().Which.Failures.ToList();
        failures.Should().Contain(f => f.Contains("QueueLength", StringComparison.Ordinal))
            .And.Contain(f => f.Contains("BatchSize", StringComparison.Ordinal));
    }

    [Fact]
    public void Defaults_are_the_reference_implementations()
    {
        var options = new HcscOptions();
        HcscOptionsValidator.Problems(options).Should().BeEmpty();
        options.Model.Arch.Should().Be("resnet50");
        options.Model.Dim.Should().Be(128);
        options.Model.QueueLength.Should().Be(16384);
        options.Objective.Temperature.Should().Be(0.2);
        options.Model.EncoderMomentum.Should().Be(0.999);
        options.Clustering.NumClusters.Should().Equal(3000, 2000, 1000);
        options.Clustering.Iterations.Should().Be(20);
        options.Clustering.Restarts.Should().Be(5);
        options.Training.WarmupEpochs.Should().Be(20);
        options.Training.Epochs.Should().Be(200);
        options.Training.BatchSize.Should().Be(256);
        options.Training.LearningRate.Should().Be(0.03);
        options.Training.WeightDecay.Should().Be(1e-4);
        options.Clustering.Seed.Should().Be(0);
        options.Objective.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.ZeroLogit);
        options.Objective.InstanceLevelReduction.Should().Be(LevelReduction.Sum);
        options.Objective.ReproduceReferenceOffByOne.Should().BeFalse();
    }

    [Fact]
    public void The_learning_rate_scales_with_the_batch()
    {
        new TrainingOptions { LearningRate = 0.03, BatchSize = 512 }.ScaledLearningRate.Should().BeApproximately(0.06, 1e-12);
    }

    [Fact]
    public void Configuration_binds_and_lists_replace_the_defaults()
    {
        var options = Bind(
            "--Hcsc:Model:QueueLength=4096", "--Hcsc:Training:BatchSize=64", "--Hcsc:Objective:UnselectedNegatives=Exclude",
            "--Hcsc:Clustering:NumClusters:0=30", "--Hcsc:Clustering:NumClusters:1=20");
        options.Model.QueueLength.Should().Be(4096);
        options.Training.BatchSize.Should().Be(64);
        options.Objective.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.Exclude);
        options.Clustering.NumClusters.Should().Equal(30, 20);
    }

    [Fact]
    public void Json_configuration_binds()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hcsc-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """{ "Hcsc": { "Training": { "Epochs": 10, "WarmupEpochs": 10 }, "Clustering": { "NumClusters": [ 100, 50 ] } } }""");
        try
        {
            var configuration = new ConfigurationBuilder().AddJsonFile(path).Build();
            var options = new HcscOptions();
            HcscOptionsBinder.Bind(configuration.GetSection(HcscOptions.SectionName), options);
            options.Training.Epochs.Should().Be(10);
            options.Clustering.NumClusters.Should().Equal(100, 50);
            HcscOptionsValidator.Problems(options).Should().BeEmpty("a warm-up as long as the run is plain MoCo");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Unknown_keys_are_an_error()
    {
        var act = () => Bind("--Hcsc:Model:QueueLenght=4096");
        act.Should().Throw<InvalidOperationException>().WithMessage("*QueueLenght*");
    }

    public static TheoryData<string, Action<HcscOptions>, string> InvalidCases => new()
    {
        { "queue", o => o.Model.QueueLength = 1000, "Model:QueueLength (1000) must be a multiple of Training:BatchSize (256)*e.g. 768*" },
        { "decreasing", o => o.Clustering.NumClusters = [1000, 2000], "Clustering:NumClusters must be strictly decreasing*got 1000, 2000*" },
        { "equal counts", o => o.Clustering.NumClusters = [100, 100], "Clustering:NumClusters must be strictly decreasing*" },
        { "no counts", o => o.Clustering.NumClusters = [], "Clustering:NumClusters must list at least one prototype count*" },
        { "one prototype", o => o.Clustering.NumClusters = [10, 1], "Clustering:NumClusters must all be >= 2, got 10, 1*" },
        { "temperature zero", o => o.Objective.Temperature = 0, "Objective:Temperature (τ) must be a finite number > 0, got 0*" },
        { "temperature NaN", o => o.Objective.Temperature = double.NaN, "Objective:Temperature (τ) must be a finite number > 0, got NaN*" },
        { "reduction", o => o.Objective.InstanceLevelReduction = (LevelReduction)5, "Objective:InstanceLevelReduction must be Sum or Mean, got 5*" },
        { "chunk", o => o.Clustering.ChunkBytes = 0, "Clustering:ChunkBytes must be > 0, got 0*" },
        { "warm-up", o => o.Training.WarmupEpochs = 201, "Training:WarmupEpochs (201) is longer than the run (Training:Epochs = 200)*" },
        { "momentum", o => o.Model.EncoderMomentum = 1, "Model:EncoderMomentum (m) must be in [0, 1), got 1*" },
        { "arch", o => o.Model.Arch = "vit", "Model:Arch is 'vit'; use one of resnet18, resnet34, resnet50, resnet101, resnet152*" },
        { "device", o => o.Training.Device = "tpu", "Training:Device is 'tpu'; use auto, cpu, cuda or cuda:N*" },
        { "bn splits", o => o.Model.BatchNormSplits = 3, "Training:BatchSize (256) must be a multiple of Model:BatchNormSplits (3)*" },
        { "percentiles", o => o.Clustering.ConcentrationLowPercentile = 95, "Clustering:ConcentrationLowPercentile (95) and ConcentrationHighPercentile (90) must satisfy*" },
        { "points per centroid", o => o.Clustering.MaxPointsPerCentroid = 5, "Clustering:MaxPointsPerCentroid (5) must be > 0 and >= Clustering:MinPointsPerCentroid (10)*" },
        { "multi-crop lengths", o => { o.Augmentation.MultiCrop = true; o.Augmentation.LocalCropSizes = [96]; }, "*one entry per local view; got 1, 4 and 4*" },
        { "multi-crop scales", o => { o.Augmentation.MultiCrop = true; o.Augmentation.LocalCropMaxScales = [0.86, 0.715, 0.571, 0.05]; }, "*0 < min <= max <= 1 for every local view*" },
        { "evaluation crop", o => o.Augmentation.EvalCropFraction = 0, "Augmentation:EvalCropFraction must be in (0, 1], got 0*" },
        { "blur probability", o => o.Augmentation.BlurProbability = 1.5, "Augmentation:BlurProbability must be in [0, 1], got 1.5*" },
        { "weight decay", o => o.Training.WeightDecay = -1, "Training:WeightDecay must be a finite number >= 0, got -1*" },
    };

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public void Each_invalid_setting_gets_its_message(string name, Action<HcscOptions> corrupt, string message)
    {
        var options = new HcscOptions();
        corrupt(options);
        HcscOptionsValidator.Problems(options).Should().ContainMatch(message, name);
    }

    [Fact]
    public void Every_problem_is_reported_at_once_through_the_options_pattern()
    {
        var act = () => Bind("--Hcsc:Objective:Temperature=0", "--Hcsc:Model:QueueLength=1000", "--Hcsc:Training:WarmupEpochs=300");
        var failures = act.Should().Throw<OptionsValidationException>().Which.Failures.ToList();
        failures.Should().HaveCount(3);
        failures.Should().ContainMatch("Objective:Temperature*").And.ContainMatch("Model:QueueLength*").And.ContainMatch("Training:WarmupEpochs*");
    }

    [Fact]
    public void Keys_of_earlier_versions_are_an_error_that_names_the_new_key()
    {
        var act = () => Bind("--Hcsc:Model:Temperature=0.1", "--Hcsc:Selection:InstanceSelection=false", "--Hcsc:Selection:UnselectedNegatives=Exclude");
        act.Should().Throw<InvalidOperationException>().WithMessage(
            "*'Hcsc:Model:Temperature' is now 'Hcsc:Objective:Temperature'*'Hcsc:Selection:InstanceSelection' is now 'Hcsc:Objective:InstanceSelection'*" +
            "'Hcsc:Selection:UnselectedNegatives' is now 'Hcsc:Objective:UnselectedNegatives'*");

        var options = new HcscOptions();
        var inMemory = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Model:Temperature"] = "0.1" }).Build();
        FluentActions.Invoking(() => HcscOptionsBinder.Bind(inMemory, options)).Should().Throw<InvalidOperationException>()
            .WithMessage("*'Model:Temperature' is now 'Objective:Temperature'*");
    }

    [Fact]
    public void Each_section_has_one_set_of_rules_used_by_the_whole_and_by_the_options_pattern()
    {
        var options = new HcscOptions();
        options.Objective.Temperature = -1;
        options.Clustering.Restarts = 0;
        options.Clustering.NumClusters = [5, 5];
        options.Model.EncoderMomentum = 1;
        var all = HcscOptionsValidator.Problems(options);
        var sections = HcscOptionsValidator.Problems(options.Objective)
            .Concat(HcscOptionsValidator.Problems(options.Clustering))
            .Concat(HcscOptionsValidator.Problems(options.Model))
            .ToList();
        sections.Should().HaveCount(4);
        all.Should().BeEquivalentTo(sections);

        var validator = new HcscOptionsValidator();
        ((IValidateOptions<ObjectiveOptions>)validator).Validate(null, options.Objective).Failures.Should().Equal(HcscOptionsValidator.Problems(options.Objective));
        ((IValidateOptions<ClusteringOptions>)validator).Validate(null, options.Clustering).Failures.Should().Equal(HcscOptionsValidator.Problems(options.Clustering));
        ((IValidateOptions<KMeansOptions>)validator).Validate(null, options.Clustering).Failures.Should().ContainSingle().Which.Should().StartWith("Clustering:Restarts");
        ((IValidateOptions<ModelOptions>)validator).Validate(null, options.Model).Failures.Should().ContainSingle().Which.Should().StartWith("Model:EncoderMomentum");
    }

    [Fact]
    public void A_section_can_be_bound_and_validated_at_start_up_on_its_own()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Objective:Temperature"] = "0" }).Build();
        var services = new ServiceCollection();
        services.AddOptions<ObjectiveOptions>().Bind(configuration.GetSection("Objective")).ValidateOnStart();
        services.AddSingleton<IValidateOptions<ObjectiveOptions>, HcscOptionsValidator>();
        using var provider = services.BuildServiceProvider();
        var act = () => provider.GetRequiredService<IStartupValidator>().Validate();
        act.Should().Throw<OptionsValidationException>().Which.Failures.Should().ContainSingle().Which.Should().StartWith("Objective:Temperature (τ)");
    }

    [Theory]
    [InlineData(224, new[] { 192, 160, 128, 96 })]  // the reference's sizes
    [InlineData(96, new[] { 82, 69, 55, 41 })]
    [InlineData(32, new[] { 27, 23, 18, 14 })]     // 27.43, 22.86, 18.29, 13.71 rounded
    public void Local_views_follow_the_global_view_by_the_reference_ratios(int imageSize, int[] expected)
    {
        var options = new AugmentationOptions { ImageSize = imageSize, MultiCrop = true };
        options.ResolvedLocalCropSizes().Should().Equal(expected);
        HcscOptionsValidator.Problems(new HcscOptions { Augmentation = options }).Should().BeEmpty();
        new AugmentationOptions { ImageSize = imageSize, LocalCropSizes = [10, 8, 6, 4] }.ResolvedLocalCropSizes().Should().Equal(10, 8, 6, 4);
    }

    [Fact]
    public void A_local_view_not_smaller_than_the_global_one_is_refused_naming_both_sizes()
    {
        var options = new HcscOptions { Augmentation = new AugmentationOptions { ImageSize = 32, MultiCrop = true, LocalCropSizes = [192, 160, 28, 32] } };
        var problems = HcscOptionsValidator.Problems(options);
        problems.Should().Contain(p => p.Contains("a local view of 192 px, not smaller than the global view's 32 px", StringComparison.Ordinal))
            .And.Contain(p => p.Contains("a local view of 32 px", StringComparison.Ordinal))
            .And.NotContain(p => p.Contains("a local view of 28 px", StringComparison.Ordinal));
    }
}
