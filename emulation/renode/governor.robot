*** Settings ***
Documentation     edgegov on an emulated STM32F4 Discovery: boots safe, link loss trips with
...               the e-stop line asserted, the IWDG resets a hung loop back to safe.
...               Run: renode-test emulation/renode/governor.robot (needs the firmware ELF
...               with the full core frozen or deployed; see emulation/renode/README.md).
Suite Setup       Setup
Suite Teardown    Teardown
Test Teardown     Test Teardown
Resource          ${RENODEKEYWORDS}

*** Variables ***
${RESC}           ${CURDIR}/stm32f4-governor.resc
${ESTOP}          sysbus.gpioPortD.EstopLine

*** Keywords ***
Boot Governor
    Execute Command           include @${RESC}
    Create Terminal Tester    sysbus.usart2    timeout=10
    ${led}=                   Create LED Tester    ${ESTOP}    defaultTimeout=2
    Set Test Variable         ${led}
    Start Emulation
    Wait For Line On Uart     @B    treatAsRegex=false

*** Test Cases ***
Boots Into The Safe State
    Boot Governor
    Assert LED State          false    testerId=${led}

Link Loss Trips And Asserts The E-Stop Line
    Boot Governor
    Write Line To Uart        import edgegov_fw.selftest as t; t.arm_then_silence()
    Wait For Line On Uart     SELFTEST ARMED    treatAsRegex=false
    Assert LED State          true     testerId=${led}
    Assert LED State          false    testerId=${led}    timeout=2

A Hung Loop Is Reset By The Watchdog And Comes Back Safe
    Boot Governor
    Write Line To Uart        import edgegov_fw.selftest as t; t.hang()
    Wait For Line On Uart     @B    treatAsRegex=false    timeout=10
    Assert LED State          false    testerId=${led}
