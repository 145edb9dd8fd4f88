"""A corpus of chat-model answers to the papers' prompts, in the shapes Llama-2-chat and LLaVA-1.6 give them, each with
the parse it must give or the reason it must be refused for.

The questions are the SFAR paper's sub-text prompts (Table 6, with Table 7's system prompt; `table6-q1` .. `q4`) and
ALT's entity prompts (appendix A: the unit question per kind, `units/<kind>`, and the three description prompts,
`describe/<name>`), asked about classes of UCF-101, HMDB-51 and Kinetics-400. The answers are written the way those
chat models answer such prompts: Llama-2-chat opens with "Sure!" / "Of course!" / "Certainly!", labels its steps
("Step 1:", "Phase 1 -", asterisk bullets under bold headings), closes with "I hope this helps! Let me know if you have
any other questions.", adds notes ("Note: ...", "Please note that smoking is harmful ..."), declines violent or unclear
actions ("I apologize, but I cannot ...", "I'm just an AI ...") and asks back; LLaVA-1.6 writes markdown headings,
bold labels and a closing "**Summary:**". Each shape a parser must handle appears at least once: preambles, numbered,
labelled, bulleted, bold, heading and ordinal-word steps, closing summaries, sign-offs, notes, refusals, too few and
too many steps, and answers cut off at the token limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What the chat around an answer is made of; none of it may reach a stored sub-text, unit or description.
CHAT = re.compile(
    r"\b(?:sure|certainly|of course|happy to help|here (?:are|is)|i hope|let me know|feel free|any other questions|"
    r"note|please|summary|summarizing|in conclusion|overall|together, these|apologi[sz]e|as an ai|just an ai|"
    r"responsible|clarify|happy \w+ing|step \d|phase \d|perspective \d|movement \d|first,|second,|finally,)\b"
    r"|\*\*|#|---|[\U0001f300-\U0001faff\u2600-\u27bf]|^\s*(?:\d+[.)]|[-*\u2022])",  # markdown, emoji, list markers
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ChatAnswer:
    """One answer: its shape, the chat model whose style it follows, the question, and what parsing it gives."""

    shape: str
    model: str  # "llama-2-chat" or "llava-1.6"
    question: str  # "table6-q1".."table6-q4", "units/<kind>", "describe/<looks-like|explanations|one-sentence>"
    action: str  # the class (or, for descriptions, the unit) asked about
    answer: str
    parsed: tuple[str, ...] = ()  # the sub-texts, units or descriptions; empty when refused
    refused: str | None = None  # the reason it is refused with

    @property
    def id(self) -> str:
        return f"{self.question}:{self.shape}"


# ----------------------------------------------------------------------------------------------------------------
# Sub-texts (SFAR, Table 6)
# ----------------------------------------------------------------------------------------------------------------

SUBTEXT_ANSWERS = (
    ChatAnswer(
        "step-labels, preamble, sign-off",
        "llama-2-chat",
        "table6-q1",
        "apply eye makeup",
        """ Sure! Here are four steps that describe the action of applying eye makeup:

Step 1: This action is preparing the eye area by cleansing the eyelids and applying a primer so the makeup stays in place.

Step 2: This action is applying eyeshadow to the eyelids with a small brush, blending the colour from the lash line towards the crease.

Step 3: This action is drawing a thin line of eyeliner along the upper lash line, from the inner corner to the outer corner of the eye.

Step 4: This action is coating the upper and lower lashes with mascara, wiggling the wand from the roots to the tips.

I hope this helps! Let me know if you have any other questions.""",
        (
            "This action is preparing the eye area by cleansing the eyelids and applying a primer so the makeup stays in "
            "place.",
            "This action is applying eyeshadow to the eyelids with a small brush, blending the colour from the lash line "
            "towards the crease.",
            "This action is drawing a thin line of eyeliner along the upper lash line, from the inner corner to the outer "
            "corner of the eye.",
            "This action is coating the upper and lower lashes with mascara, wiggling the wand from the roots to the tips.",
        ),
    ),
    ChatAnswer(
        "numbered, two-sentence preamble, summary paragraph, sign-off",
        "llama-2-chat",
        "table6-q2",
        "clean and jerk",
        """ Of course! I'd be happy to help. Here are four unique movements that define the action of "clean and jerk":

1. This action is the lifter gripping the barbell just outside the knees and pulling it explosively from the floor.
2. This action is the lifter dropping into a front squat to catch the barbell on the shoulders, elbows pointing forward.
3. This action is the lifter dipping the knees and driving the barbell overhead while splitting the feet forward and back.
4. This action is the lifter recovering from the split and standing still with the barbell locked out overhead.

In summary, the clean and jerk combines a powerful pull, a fast catch, an explosive drive and a controlled recovery into one continuous lift. Each movement depends on the one before it, and together they show the strength, speed and coordination the lift demands.

Please let me know if you have any further questions or if there's anything else I can help you with!""",
        (
            "This action is the lifter gripping the barbell just outside the knees and pulling it explosively from the "
            "floor.",
            "This action is the lifter dropping into a front squat to catch the barbell on the shoulders, elbows pointing "
            "forward.",
            "This action is the lifter dipping the knees and driving the barbell overhead while splitting the feet "
            "forward and back.",
            "This action is the lifter recovering from the split and standing still with the barbell locked out overhead.",
        ),
    ),
    ChatAnswer(
        "ordinal words in one paragraph, closing paragraph",
        "llama-2-chat",
        "table6-q3",
        "juggling balls",
        """ Certainly! Here is a breakdown of the action "juggling balls" into four critical phases:

First, this action is the juggler holding two balls in the dominant hand and one in the other, standing relaxed with the elbows bent. Second, this action is the juggler tossing the first ball in an arc to eye level towards the opposite hand. Third, this action is the juggler releasing the second ball from the other hand just as the first one peaks, so the balls cross in the air. Fourth, this action is the juggler catching each ball and throwing it again in a steady rhythm, keeping all three balls moving.

Each phase builds on the previous one, and a juggler who masters them can keep the pattern going for as long as they like.""",
        (
            "This action is the juggler holding two balls in the dominant hand and one in the other, standing relaxed "
            "with the elbows bent.",
            "This action is the juggler tossing the first ball in an arc to eye level towards the opposite hand.",
            "This action is the juggler releasing the second ball from the other hand just as the first one peaks, so "
            "the balls cross in the air.",
            "This action is the juggler catching each ball and throwing it again in a steady rhythm, keeping all three "
            "balls moving.",
        ),
    ),
    ChatAnswer(
        "perspective labels, summarizing statement",
        "llama-2-chat",
        "table6-q4",
        "brush hair",
        """ Sure, here are four concise descriptions of the action "brush hair" from different perspectives:

1. Physical perspective: This action is the repeated stroking of a brush through the hair from the scalp to the ends.
2. Sensory perspective: This action is the feeling of bristles gliding over the scalp as tangles loosen under gentle pressure.
3. Visual perspective: This action is the hair becoming smooth, shiny and neatly arranged as the brush passes through it.
4. Practical perspective: This action is a daily grooming routine that removes knots and spreads natural oils along each strand.

Summarizing statement: Brushing hair is a simple daily habit that engages the body, the senses and the appearance at once, leaving the hair tidy and healthy.""",
        (
            "This action is the repeated stroking of a brush through the hair from the scalp to the ends.",
            "This action is the feeling of bristles gliding over the scalp as tangles loosen under gentle pressure.",
            "This action is the hair becoming smooth, shiny and neatly arranged as the brush passes through it.",
            "This action is a daily grooming routine that removes knots and spreads natural oils along each strand.",
        ),
    ),
    ChatAnswer(
        "markdown headings, bold summary",
        "llava-1.6",
        "table6-q3",
        "archery",
        """### Phase 1: Preparation
This action is the archer standing sideways to the target, nocking an arrow on the string and setting the grip on the bow.

### Phase 2: Drawing
This action is the archer raising the bow and pulling the string back to the anchor point beside the jaw.

### Phase 3: Aiming
This action is the archer holding the draw steady while lining up the sight with the centre of the target.

### Phase 4: Release
This action is the archer relaxing the fingers so the string springs forward and the arrow flies towards the target.

**Summary:** Each phase of archery is essential: preparation sets the posture, drawing builds the power, aiming gives precision and the release sends the arrow on its way.""",
        (
            "This action is the archer standing sideways to the target, nocking an arrow on the string and setting the "
            "grip on the bow.",
            "This action is the archer raising the bow and pulling the string back to the anchor point beside the jaw.",
            "This action is the archer holding the draw steady while lining up the sight with the centre of the target.",
            "This action is the archer relaxing the fingers so the string springs forward and the arrow flies towards the "
            "target.",
        ),
    ),
    ChatAnswer(
        "numbered bold headings, closing sentence",
        "llava-1.6",
        "table6-q2",
        "diving",
        """1. **The Approach**: This action is the diver walking to the end of the board with measured steps, arms relaxed at the sides.
2. **The Hurdle**: This action is the diver jumping onto the end of the board with both feet to load it like a spring.
3. **The Flight**: This action is the diver leaving the board and tucking, twisting or piking in the air above the water.
4. **The Entry**: This action is the diver straightening the body and slicing into the water hands first with little splash.

These four movements together define diving: a controlled approach, a powerful hurdle, an acrobatic flight and a clean entry.""",
        (
            "This action is the diver walking to the end of the board with measured steps, arms relaxed at the sides.",
            "This action is the diver jumping onto the end of the board with both feet to load it like a spring.",
            "This action is the diver leaving the board and tucking, twisting or piking in the air above the water.",
            "This action is the diver straightening the body and slicing into the water hands first with little splash.",
        ),
    ),
    ChatAnswer(
        "asterisk bullets, two-sentence note",
        "llama-2-chat",
        "table6-q1",
        "pull ups",
        """ Sure! Here are four steps that describe the action of "pull ups":

* This action is hanging from a bar with the hands shoulder-width apart and the palms facing away from the body.
* This action is pulling the body upward by bending the elbows until the chin rises above the bar.
* This action is pausing briefly at the top while keeping the shoulders down and the core tight.
* This action is lowering the body slowly until the arms are fully extended again.

Note: The movements may vary depending on the individual's fitness level and the type of grip used. It is always a good idea to warm up before exercising.""",
        (
            "This action is hanging from a bar with the hands shoulder-width apart and the palms facing away from the "
            "body.",
            "This action is pulling the body upward by bending the elbows until the chin rises above the bar.",
            "This action is pausing briefly at the top while keeping the shoulders down and the core tight.",
            "This action is lowering the body slowly until the arms are fully extended again.",
        ),
    ),
    ChatAnswer(
        "step words, sign-off on the last step's line",
        "llama-2-chat",
        "table6-q1",
        "kick ball",
        """Step One: This action is the player placing the non-kicking foot beside the ball and swinging the kicking leg back.
Step Two: This action is the player bringing the kicking leg forward and striking the ball with the instep.
Step Three: This action is the player following through with the kicking leg in the direction of the target.
Step Four: This action is the ball travelling towards the goal while the player regains balance. I hope this helps! Let me know if you have any other questions.""",
        (
            "This action is the player placing the non-kicking foot beside the ball and swinging the kicking leg back.",
            "This action is the player bringing the kicking leg forward and striking the ball with the instep.",
            "This action is the player following through with the kicking leg in the direction of the target.",
            "This action is the ball travelling towards the goal while the player regains balance.",
        ),
    ),
    ChatAnswer(
        "bold headings on their own lines, conclusion",
        "llava-1.6",
        "table6-q4",
        "yo yo",
        """Here are four concise descriptions of the action "yo yo", each from a different perspective:

**Perspective 1: The Hand**
This action is the hand flicking downward to send the yo-yo spinning to the end of its string.

**Perspective 2: The Toy**
This action is the yo-yo spinning at the bottom of the string, storing the energy of the throw.

**Perspective 3: The String**
This action is the string winding back around the axle as the hand gives a gentle tug.

**Perspective 4: The Player**
This action is the player catching the returning yo-yo in the palm, ready for the next throw.

In conclusion, playing with a yo-yo is a rhythmic exchange between the hand, the toy and the string, repeated throw after throw.""",
        (
            "This action is the hand flicking downward to send the yo-yo spinning to the end of its string.",
            "This action is the yo-yo spinning at the bottom of the string, storing the energy of the throw.",
            "This action is the string winding back around the axle as the hand gives a gentle tug.",
            "This action is the player catching the returning yo-yo in the palm, ready for the next throw.",
        ),
    ),
    ChatAnswer(
        "unnumbered paragraphs, overall, happy-training sign-off",
        "llama-2-chat",
        "table6-q1",
        "handstand pushups",
        """ Of course! Here are the four steps of the action "handstand pushups":

This action is placing both hands on the floor about shoulder-width apart, close to a wall.

This action is kicking the legs up against the wall so the body is upside down and straight.

This action is bending the elbows to lower the head towards the floor in a controlled way.

This action is pressing through the palms to straighten the arms and lift the body back up.

Overall, handstand pushups demand strength in the shoulders and arms as well as good balance. Happy training!""",
        (
            "This action is placing both hands on the floor about shoulder-width apart, close to a wall.",
            "This action is kicking the legs up against the wall so the body is upside down and straight.",
            "This action is bending the elbows to lower the head towards the floor in a controlled way.",
            "This action is pressing through the palms to straighten the arms and lift the body back up.",
        ),
    ),
    ChatAnswer(
        "firstly-finally ordinals, health note",
        "llama-2-chat",
        "table6-q3",
        "smoke",
        """ Sure! Here are four critical phases of the action "smoke":

Firstly, this action is the person taking a cigarette out of the pack and placing it between the lips. Secondly, this action is the person lighting the tip with a lighter while drawing in gently. Thirdly, this action is the person inhaling the smoke and holding it briefly in the lungs. Finally, this action is the person exhaling a stream of smoke and lowering the cigarette from the mouth.

Please note that smoking is harmful to your health and is a leading cause of preventable disease. If you are trying to quit, there are many resources available to help you.""",
        (
            "This action is the person taking a cigarette out of the pack and placing it between the lips.",
            "This action is the person lighting the tip with a lighter while drawing in gently.",
            "This action is the person inhaling the smoke and holding it briefly in the lungs.",
            "This action is the person exhaling a stream of smoke and lowering the cigarette from the mouth.",
        ),
    ),
    ChatAnswer(
        "bold ordinal words, each on its own line",
        "llava-1.6",
        "table6-q1",
        "ride bike",
        """**First**, the rider swings one leg over the frame and sits on the saddle with both hands on the handlebars.
**Second**, the rider pushes down on one pedal to set the bike rolling forward.
**Third**, the rider pedals in a steady rhythm while steering with small movements of the handlebars.
**Finally**, the rider squeezes the brakes and puts a foot down to stop.""",
        (
            "The rider swings one leg over the frame and sits on the saddle with both hands on the handlebars.",
            "The rider pushes down on one pedal to set the bike rolling forward.",
            "The rider pedals in a steady rhythm while steering with small movements of the handlebars.",
            "The rider squeezes the brakes and puts a foot down to stop.",
        ),
    ),
    ChatAnswer(
        "quoted steps, closing remark",
        "llama-2-chat",
        "table6-q1",
        "playing guitar",
        """ Here are four distinct steps for the action "playing guitar":

Step 1: "This action is the guitarist resting the guitar on the thigh and placing the fingers of one hand on the frets."
Step 2: "This action is the guitarist pressing the strings down on the fretboard to form a chord shape."
Step 3: "This action is the guitarist strumming the strings with a pick held in the other hand."
Step 4: "This action is the guitarist changing chord shapes in time with the rhythm of the song."

These steps are crucial for playing any song on the guitar, and each one is distinct from the others.""",
        (
            "This action is the guitarist resting the guitar on the thigh and placing the fingers of one hand on the "
            "frets.",
            "This action is the guitarist pressing the strings down on the fretboard to form a chord shape.",
            "This action is the guitarist strumming the strings with a pick held in the other hand.",
            "This action is the guitarist changing chord shapes in time with the rhythm of the song.",
        ),
    ),
    ChatAnswer(
        "bold phase headings with indented bullets",
        "llama-2-chat",
        "table6-q3",
        "sword exercise",
        """ Sure, here are four critical phases of the action "sword exercise":

1. **Phase 1: Stance**
	* This action is the fencer standing with the feet apart, knees bent and the sword held in front of the body.
2. **Phase 2: Guard**
	* This action is the fencer raising the blade to protect the head and torso from an imagined attack.
3. **Phase 3: Strike**
	* This action is the fencer stepping forward and swinging the sword in a controlled diagonal cut.
4. **Phase 4: Recovery**
	* This action is the fencer returning to the stance with the blade back in guard, ready for the next cut.

By practising these phases, the fencer builds strength, timing and control with the sword.""",
        (
            "This action is the fencer standing with the feet apart, knees bent and the sword held in front of the body.",
            "This action is the fencer raising the blade to protect the head and torso from an imagined attack.",
            "This action is the fencer stepping forward and swinging the sword in a controlled diagonal cut.",
            "This action is the fencer returning to the stance with the blade back in guard, ready for the next cut.",
        ),
    ),
    ChatAnswer(
        "summary on the last step's line",
        "llava-1.6",
        "table6-q2",
        "golf",
        """1. This action is the golfer addressing the ball with the feet shoulder-width apart and the club behind the ball.
2. This action is the golfer turning the shoulders away from the target in a smooth backswing.
3. This action is the golfer shifting the weight forward and swinging the club down through the ball.
4. This action is the golfer finishing high with the chest facing the target. Overall, these four movements turn a still address into a powerful, balanced swing.""",
        (
            "This action is the golfer addressing the ball with the feet shoulder-width apart and the club behind the "
            "ball.",
            "This action is the golfer turning the shoulders away from the target in a smooth backswing.",
            "This action is the golfer shifting the weight forward and swinging the club down through the ball.",
            "This action is the golfer finishing high with the chest facing the target.",
        ),
    ),
    ChatAnswer(
        "dash bullets with bold step labels",
        "llava-1.6",
        "table6-q1",
        "push ups",
        """- **Step 1:** This action is the person lying face down with the hands under the shoulders and the body straight.
- **Step 2:** This action is the person pushing the floor away until the arms are straight.
- **Step 3:** This action is the person lowering the chest towards the floor by bending the elbows.
- **Step 4:** This action is the person pressing back up to the starting position.""",
        (
            "This action is the person lying face down with the hands under the shoulders and the body straight.",
            "This action is the person pushing the floor away until the arms are straight.",
            "This action is the person lowering the chest towards the floor by bending the elbows.",
            "This action is the person pressing back up to the starting position.",
        ),
    ),
    ChatAnswer(
        "movement names before a dash",
        "llama-2-chat",
        "table6-q2",
        "hula hoop",
        """ Sure! Here are four unique movements that define the action "hula hoop":

Movement 1: The Spin - This action is the person setting the hoop spinning around the waist with a push of the hands.
Movement 2: The Sway - This action is the person shifting the hips forward and back to keep the hoop up.
Movement 3: The Balance - This action is the person keeping the feet planted and the upper body still.
Movement 4: The Catch - This action is the person slowing down and catching the hoop as it drops.

Together, these movements keep the hoop circling the body for as long as the rhythm lasts. I hope this helps!""",
        (
            "This action is the person setting the hoop spinning around the waist with a push of the hands.",
            "This action is the person shifting the hips forward and back to keep the hoop up.",
            "This action is the person keeping the feet planted and the upper body still.",
            "This action is the person slowing down and catching the hoop as it drops.",
        ),
    ),
    ChatAnswer(
        "an apology first, then the steps",
        "llama-2-chat",
        "table6-q1",
        "fencing",
        """ I apologize, but I'm a large language model, I cannot demonstrate physical actions. However, I can describe them! Here are four steps of the action "fencing":

1. This action is the fencer saluting the opponent by raising the blade and lowering the mask.
2. This action is the fencer taking the on-guard position with the knees bent and the weapon arm extended.
3. This action is the fencer lunging forward to touch the opponent with the point of the blade.
4. This action is the fencer recovering back to the on-guard position after the attack.""",
        (
            "This action is the fencer saluting the opponent by raising the blade and lowering the mask.",
            "This action is the fencer taking the on-guard position with the knees bent and the weapon arm extended.",
            "This action is the fencer lunging forward to touch the opponent with the point of the blade.",
            "This action is the fencer recovering back to the on-guard position after the attack.",
        ),
    ),
    ChatAnswer(
        "numbered with parentheses, sign-off with emoji",
        "llava-1.6",
        "table6-q1",
        "juggling soccer ball",
        """Sure, here's a breakdown of the action:

1) This action is the player dropping the ball onto the top of the foot.
2) This action is the player flicking the foot up to send the ball back into the air.
3) This action is the player switching between the left and the right foot to keep the ball up.
4) This action is the player using the thigh to cushion the ball when it drops too low.

Happy juggling! 😊""",
        (
            "This action is the player dropping the ball onto the top of the foot.",
            "This action is the player flicking the foot up to send the ball back into the air.",
            "This action is the player switching between the left and the right foot to keep the ball up.",
            "This action is the player using the thigh to cushion the ball when it drops too low.",
        ),
    ),
    ChatAnswer(
        "numbered, tips with bullets after the steps",
        "llama-2-chat",
        "table6-q1",
        "apply lipstick",
        """ Sure! Here are four steps that describe the action of applying lipstick:

1. This action is outlining the lips with a lip liner that matches the shade of the lipstick.
2. This action is applying the lipstick to the centre of the lower lip and spreading it towards the corners.
3. This action is pressing the lips together to spread the colour evenly over both lips.
4. This action is blotting the lips with a tissue to remove the excess lipstick.

Additionally, here are some tips to keep in mind:

* Exfoliate your lips beforehand for a smoother finish.
* Use a lip brush for more precise application.

I hope this helps! Let me know if you have any other questions.""",
        (
            "This action is outlining the lips with a lip liner that matches the shade of the lipstick.",
            "This action is applying the lipstick to the centre of the lower lip and spreading it towards the corners.",
            "This action is pressing the lips together to spread the colour evenly over both lips.",
            "This action is blotting the lips with a tissue to remove the excess lipstick.",
        ),
    ),
    ChatAnswer(
        "numbered with detail bullets under each step",
        "llava-1.6",
        "table6-q3",
        "pommel horse",
        """1. This action is the gymnast mounting the horse with both hands on the pommels.
   - The arms are straight and the body is held above the horse.
2. This action is the gymnast swinging the legs in wide circles around the horse.
   - The hips stay extended and the legs stay together.
3. This action is the gymnast travelling along the horse while the legs keep circling.
4. This action is the gymnast dismounting with a handstand and landing on both feet.

In summary, the pommel horse routine is a continuous flow of circles, travels and a controlled dismount.""",
        (
            "This action is the gymnast mounting the horse with both hands on the pommels. The arms are straight and "
            "the body is held above the horse.",
            "This action is the gymnast swinging the legs in wide circles around the horse. The hips stay extended and "
            "the legs stay together.",
            "This action is the gymnast travelling along the horse while the legs keep circling.",
            "This action is the gymnast dismounting with a handstand and landing on both feet.",
        ),
    ),
    ChatAnswer(
        "markdown rule and an emoji line after the steps",
        "llava-1.6",
        "table6-q1",
        "brushing teeth",
        """1. This action is squeezing a pea-sized amount of toothpaste onto the bristles of the toothbrush.
2. This action is brushing the outer surfaces of the teeth in small circles, upper and lower jaw.
3. This action is brushing the inner and chewing surfaces of the teeth and the tongue.
4. This action is rinsing the mouth with water and spitting it out.

---

🪥✨""",
        (
            "This action is squeezing a pea-sized amount of toothpaste onto the bristles of the toothbrush.",
            "This action is brushing the outer surfaces of the teeth in small circles, upper and lower jaw.",
            "This action is brushing the inner and chewing surfaces of the teeth and the tongue.",
            "This action is rinsing the mouth with water and spitting it out.",
        ),
    ),
    ChatAnswer(
        "refusal: violence",
        "llama-2-chat",
        "table6-q1",
        "punch",
        """ I apologize, but I cannot provide a step-by-step description of how to punch someone, as it promotes violence and could cause harm. It is important to resolve conflicts peacefully and respectfully. If you have any other questions, please feel free to ask.""",
        refused="refusal",
    ),
    ChatAnswer(
        "refusal: just an AI",
        "llama-2-chat",
        "table6-q3",
        "shoot gun",
        """ I'm just an AI, it's not within my programming or ethical guidelines to provide instructions on how to use firearms or engage in any harmful activities. I would like to remind you that guns can be dangerous and should only be handled by trained professionals in a safe and controlled environment.""",
        refused="refusal",
    ),
    ChatAnswer(
        "refusal: asks back",
        "llama-2-chat",
        "table6-q4",
        "sword",
        """ I'm not sure I understand what you mean by "sword". Could you please provide more context or clarify your question? I'd be happy to help once I have a better understanding.""",
        refused="refusal",
    ),
    ChatAnswer(
        "refusal: as a responsible AI, with a counter-offer",
        "llama-2-chat",
        "table6-q2",
        "kick person",
        """ As a responsible and ethical AI language model, I must point out that describing how to kick a person is not appropriate, as it may encourage harmful behavior. Instead, I suggest focusing on actions that promote safety and respect, such as martial arts practised with a partner under supervision.

Is there anything else I can help you with?""",
        refused="refusal",
    ),
    ChatAnswer(
        "too few steps, summary",
        "llava-1.6",
        "table6-q1",
        "climb stairs",
        """1. This action is the person gripping the rail and lifting one foot onto the first step.
2. This action is the person shifting the weight forward and straightening the leg to rise onto the step.
3. This action is the person repeating the movement with the other foot to climb to the next step.

Overall, climbing stairs is a repetitive sequence of lifting, shifting and straightening.""",
        refused="found 3 steps, need 4",
    ),
    ChatAnswer(
        "too many steps, sign-off",
        "llama-2-chat",
        "table6-q1",
        "climb",
        """ Sure! Here are the steps of the action "climb":

1. This action is the climber chalking the hands and studying the route from the ground.
2. This action is the climber reaching for the first hold and pulling up onto the wall.
3. This action is the climber pushing up with the legs while searching for the next foothold.
4. This action is the climber shifting the weight over the feet to reach a higher hold.
5. This action is the climber reaching the top and clipping the rope into the anchor.

I hope this helps! Let me know if you have any other questions.""",
        refused="found 5 steps, need 4",
    ),
    ChatAnswer(
        "cut off at the token limit",
        "llama-2-chat",
        "table6-q2",
        "snatch weight lifting",
        """ Of course! Here are four unique movements that define the action "snatch":

1. This action is the lifter setting up over the barbell with a wide grip and a flat back.
2. This action is the lifter pulling the barbell from the floor past the knees with the arms straight.
3. This action is the lifter extending the hips and""",
        refused="found 3 steps, need 4",
    ),
    ChatAnswer(
        "steps that repeat each other",
        "llava-1.6",
        "table6-q1",
        "walk",
        """1. This action is the person taking a step forward.
2. This action is the person taking a step forward.
3. This action is the person swinging the arms.
4. This action is the person keeping a steady pace.""",
        refused="steps repeat each other",
    ),
)

# ----------------------------------------------------------------------------------------------------------------
# Entity units (ALT, appendix A: "What are identifying {kind} of an action {label}? List them concisely.")
# ----------------------------------------------------------------------------------------------------------------

UNIT_ANSWERS = (
    ChatAnswer(
        "numbered, preamble, sign-off",
        "llama-2-chat",
        "units/object",
        "apply eye makeup",
        """ Sure! Here are some identifying objects of the action "apply eye makeup":

1. Eyeshadow palette
2. Eyeliner pencil
3. Mascara wand
4. Makeup brushes
5. Mirror

I hope this helps! Let me know if you have any other questions.""",
        ("eyeshadow palette", "eyeliner pencil", "mascara wand", "makeup brushes", "mirror"),
    ),
    ChatAnswer(
        "comma list, sign-off with a comma on its own line",
        "llama-2-chat",
        "units/body part",
        "clean and jerk",
        """ Sure, here are the identifying body parts of the action "clean and jerk": hands, wrists, shoulders, hips, knees and feet.

I hope this helps, and please let me know if you have any other questions!""",
        ("hands", "wrists", "shoulders", "hips", "knees", "feet"),
    ),
    ChatAnswer(
        "comma list after a preamble line with a comma",
        "llama-2-chat",
        "units/object",
        "snatch weight lifting",
        """ Of course, I'd be happy to help!
Barbell, weight plates, chalk, lifting platform.""",
        ("barbell", "weight plates", "chalk", "lifting platform"),
    ),
    ChatAnswer(
        "refusal",
        "llama-2-chat",
        "units/role",
        "punch",
        """ I apologize, but I cannot provide a list of identifying roles for the action "punch" as it may promote or glorify violence. It is important to recognize that violence is never an acceptable solution to conflicts, and it can cause harm to individuals and communities. If you have any other questions, please feel free to ask!""",
        refused="refusal",
    ),
    ChatAnswer(
        "bold names with explanations",
        "llava-1.6",
        "units/scene",
        "climb",
        """1. **Gymnasium**: An indoor space with mats and climbing ropes.
2. **Playground**: Outdoor climbing frames and monkey bars.
3. **Rock climbing wall**: A vertical wall with hand holds.""",
        ("gymnasium", "playground", "rock climbing wall"),
    ),
    ChatAnswer(
        "bullets with a note bullet",
        "llama-2-chat",
        "units/motion",
        "kick ball",
        """ Sure! Here are some identifying primitive motions of the action "kick ball":

* Swinging the leg backward
* Planting the standing foot
* Striking the ball
* Bending the standing knee
* Note: These motions can vary depending on the type of kick and the skill level of the player.""",
        ("swinging the leg backward", "planting the standing foot", "striking the ball", "bending the standing knee"),
    ),
    ChatAnswer(
        "roles with parenthesised explanations, closing remark",
        "llama-2-chat",
        "units/role",
        "fencing",
        """ Certainly! Here are some identifying roles of the action "fencing":

1. Fencer (the person holding the weapon)
2. Opponent (the other fencer)
3. Referee (the official who awards the touches)

These roles are typically present in a fencing bout.""",
        ("fencer", "opponent", "referee"),
    ),
    ChatAnswer(
        "heading and dash bullets, closing remark",
        "llava-1.6",
        "units/object",
        "archery",
        """### Identifying Objects
- Bow
- Arrows
- Quiver
- Target

These objects are commonly associated with archery.""",
        ("bow", "arrows", "quiver", "target"),
    ),
    ChatAnswer(
        "nothing to list",
        "llama-2-chat",
        "units/object",
        "climb stairs",
        """ There are no specific identifying objects for the action "climb stairs", as it can be performed on any staircase without special equipment.""",
        refused="no units listed",
    ),
    ChatAnswer(
        "asks back",
        "llama-2-chat",
        "units/scene",
        "sword",
        """ I'm not sure what you mean by "an action sword". Could you please clarify what you are asking? I'll do my best to help.""",
        refused="refusal",
    ),
)

# ----------------------------------------------------------------------------------------------------------------
# Entity descriptions (ALT, appendix A's three prompts)
# ----------------------------------------------------------------------------------------------------------------

DESCRIPTION_ANSWERS = (
    ChatAnswer(
        "one sentence after Sure!",
        "llama-2-chat",
        "describe/one-sentence",
        "guitar pick",
        """ Sure! A guitar pick is a small, flat tool used to pluck or strum the strings of a guitar.""",
        ("A guitar pick is a small, flat tool used to pluck or strum the strings of a guitar.",),
    ),
    ChatAnswer(
        "introduction line, two sentences",
        "llama-2-chat",
        "describe/looks-like",
        "gym floor",
        """ Certainly! Here's a concise description of what an action "gym floor" looks like:

A gym floor is a large, flat surface covered with rubber mats or polished wood, marked with lines for different sports. It is usually found inside a sports hall or fitness centre.""",
        (
            "A gym floor is a large, flat surface covered with rubber mats or polished wood, marked with lines for "
            "different sports.",
        ),
    ),
    ChatAnswer(
        "numbered senses with bold headings, note",
        "llama-2-chat",
        "describe/explanations",
        "bar",
        """ Sure! Here are some potential explanations for "bar":

1. **Weightlifting bar**: A long metal bar that holds weight plates at each end.
2. **Drinking establishment**: A place where alcoholic drinks are served at a counter.
3. **Unit of pressure**: A metric unit equal to 100,000 pascals.

Note: The meaning of "bar" depends on the context in which it is used.""",
        (
            "A long metal bar that holds weight plates at each end.",
            "A place where alcoholic drinks are served at a counter.",
            "A metric unit equal to 100,000 pascals.",
        ),
    ),
    ChatAnswer(
        "asks back",
        "llama-2-chat",
        "describe/looks-like",
        "hips",
        """ I apologize, but I'm not sure what you mean by "an action hips". Could you please provide more context or clarify your question?""",
        refused="refusal",
    ),
    ChatAnswer(
        "lead-in phrase",
        "llama-2-chat",
        "describe/one-sentence",
        "yo-yo",
        """ Sure! In one sentence, a yo-yo is a toy made of two discs joined by an axle, with a string wound around it.""",
        ("A yo-yo is a toy made of two discs joined by an axle, with a string wound around it.",),
    ),
    ChatAnswer(
        "bold heading line naming the unit",
        "llava-1.6",
        "describe/one-sentence",
        "mascara wand",
        """**Mascara wand**

A mascara wand is a small brush with a spiral of bristles used to coat the eyelashes with mascara.""",
        ("A mascara wand is a small brush with a spiral of bristles used to coat the eyelashes with mascara.",),
    ),
    ChatAnswer(
        "preamble sentences and a sign-off around it",
        "llama-2-chat",
        "describe/one-sentence",
        "chalk bag",
        """ Of course! I'd be happy to help. A chalk bag is a small pouch worn at the waist that holds powdered chalk for drying the hands. I hope this helps!""",
        ("A chalk bag is a small pouch worn at the waist that holds powdered chalk for drying the hands.",),
    ),
    ChatAnswer(
        "emoji after the preamble",
        "llava-1.6",
        "describe/looks-like",
        "lifting platform",
        """Sure thing! 😊 A lifting platform is a raised square of wood and rubber where weightlifters drop the barbell safely.""",
        ("A lifting platform is a raised square of wood and rubber where weightlifters drop the barbell safely.",),
    ),
    ChatAnswer(
        "refusal: firearms",
        "llama-2-chat",
        "describe/explanations",
        "trigger pull",
        """ I cannot provide explanations for "trigger pull" as it relates to the use of firearms, which can be dangerous. If you have any other questions, I'm here to help.""",
        refused="refusal",
    ),
    ChatAnswer(
        "bullets with a sign-off bullet",
        "llava-1.6",
        "describe/explanations",
        "spotter",
        """- A person who watches a lifter and helps if the weight becomes too heavy.
- Someone who looks out for a particular thing, such as birds or trains.
- I hope these explanations are helpful!""",
        (
            "A person who watches a lifter and helps if the weight becomes too heavy.",
            "Someone who looks out for a particular thing, such as birds or trains.",
        ),
    ),
)
