/** The benchmarks' two message texts: a one-part ASCII/GSM duty notice and a 3-part UCS-2 Chinese meeting notice. */
export const ASCII_NOTICE = 'Duty notice: the 18:00 shift briefing moves to room 301. Reply 1 to confirm.';
export const CHINESE_3_PART =
  '关于召开全市防汛工作紧急会议的通知：各区、各部门：为切实做好今年汛期防汛抗洪工作，经市政府研究，定于明日上午九时在市政府三号会议室召开全市防汛工作紧急会议。' +
  '请各单位主要负责同志准时参加，并提前十分钟签到。会议期间请将手机调至静音状态。如有特殊情况不能参会，请于今日下午五时前向市政府办公厅书面请假。';
