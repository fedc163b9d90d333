using Hcsc.Core.Options;
using Hcsc.Losses;

namespace Hcsc.Tests.Losses;

public class ObjectiveOptionsTests
{
    [Fact]
    public void The_presets_name_the_reference_and_the_paper_behaviours()
    {
        var reference = ObjectiveOptions.Reference();
        reference.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.ZeroLogit);
        reference.InstanceLevelReduction.Should().Be(LevelReduction.Sum);
        reference.ReproduceReferenceOffByOne.Should().BeTrue();
        reference.Temperature.Should().Be(0.2);

        var paper = ObjectiveOptions.Paper();
        paper.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.Exclude);
        paper.ReproduceReferenceOffByOne.Should().BeFalse();

        var defaults = new ObjectiveOptions();
        defaults.ReproduceReferenceOffByOne.Should().BeFalse("R3 is a bug, fixed by default");
        defaults.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.ZeroLogit);
        defaults.InstanceSelection.Should().BeTrue();
        defaults.PrototypeSelection.Should().BeTrue();
        defaults.SelectionOnLocalViews.Should().BeTrue();
        defaults.CheckIndexRangesOnDevice.Should().BeFalse();
    }

    [Fact]
    public void The_objective_takes_the_Objective_section_of_the_library_wide_options_as_is()
    {
        var hcsc = new HcscOptions();
        hcsc.Objective.Temperature = 0.1;
        hcsc.Objective.InstanceSelection = false;
        hcsc.Objective.UnselectedNegatives = UnselectedNegativeHandling.Exclude;
        hcsc.Objective.InstanceLevelReduction = LevelReduction.Mean;
        using var objective = new HcscObjective(hcsc.Objective);
        var o = objective.Options;
        o.Temperature.Should().Be(0.1);
        o.InstanceSelection.Should().BeFalse();
        o.PrototypeSelection.Should().BeTrue();
        o.UnselectedNegatives.Should().Be(UnselectedNegativeHandling.Exclude);
        o.InstanceLevelReduction.Should().Be(LevelReduction.Mean);
    }

    [Fact]
    public void The_objective_keeps_its_own_copy_of_the_options()
    {
        var options = new ObjectiveOptions { Temperature = 0.3 };
        using var objective = new HcscObjective(options);
        options.Temperature = 5;
        objective.Options.Temperature.Should().Be(0.3);
    }

    [Fact]
    public void The_objective_checks_its_options_with_the_validators_rules()
    {
        var options = new ObjectiveOptions { Temperature = double.PositiveInfinity, InstanceLevelReduction = (LevelReduction)7 };
        var act = () => new HcscObjective(options);
        string message = act.Should().Throw<ArgumentException>().Which.Message;
        foreach (string problem in HcscOptionsValidator.Problems(options))
        {
            message.Should().Contain(problem);
        }

        HcscOptionsValidator.Problems(options).Should().HaveCount(2);
    }
}
